// Test-only entry: `coupons aggregator`, except that the process freezes at the first phase event
// named by its argument (reading, staging or after-exec; see src/aggregator/run-phases.ts), so a
// test can SIGKILL it at that exact point of a run. Started as a child process by
// spawnAggregator(…, { pauseAt }); production code knows nothing about it.
import { subscribe } from 'node:diagnostics_channel'
import { writeSync } from 'node:fs'
import { aggregatorCommand } from '../../src/aggregator/aggregator-command.js'
import { RUN_PHASE_CHANNEL, type RunPhase, type RunPhaseEvent } from '../../src/aggregator/run-phases.js'

const PHASES: readonly RunPhase[] = ['reading', 'staging', 'after-exec']
const pauseAt = process.argv[2] as RunPhase
if (!PHASES.includes(pauseAt)) throw new Error(`usage: paused-aggregator.ts <${PHASES.join('|')}>`)

subscribe(RUN_PHASE_CHANNEL, (message) => {
  const event = message as RunPhaseEvent
  if (event.phase !== pauseAt) return
  // A JSON line like the aggregator's own logs, written synchronously: the wait below blocks the
  // event loop for good, so nothing asynchronous would ever be flushed.
  writeSync(1, JSON.stringify({ msg: 'aggregator paused', ...event }) + '\n')
  // Nothing ever notifies this word: the process stays exactly here until it is killed.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
})

try {
  await aggregatorCommand([])
} catch (err) {
  console.error(`paused-aggregator: ${(err as Error).message}`)
  process.exitCode = 1
}
