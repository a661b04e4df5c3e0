// Listening to the aggregator's phase events (src/aggregator/run-phases.ts) for one test.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { Test } from 'tap'
import { RUN_PHASE_CHANNEL, type RunPhaseEvent } from '../../src/aggregator/run-phases.js'

/** Calls `listener` with every phase event published until the test ends. */
export function onRunPhase (t: Test, listener: (event: RunPhaseEvent) => void): void {
  const onMessage = (message: unknown): void => { listener(message as RunPhaseEvent) }
  subscribe(RUN_PHASE_CHANNEL, onMessage)
  t.teardown(() => { unsubscribe(RUN_PHASE_CHANNEL, onMessage) })
}

/** The phase events published from now until the test ends, in order. */
export function recordRunPhases (t: Test): RunPhaseEvent[] {
  const events: RunPhaseEvent[] = []
  onRunPhase(t, (event) => { events.push(event) })
  return events
}
