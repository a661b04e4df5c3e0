// Observability of a run in progress: the aggregator announces each phase it reaches on the
// diagnostics channel `coupons:aggregator:phase` (node:diagnostics_channel). Publishing costs
// nothing without a subscriber; an APM, a profiler or a test can subscribe without the aggregator
// knowing about it. Subscribers run synchronously, at the exact point of the run named below.
import { channel } from 'node:diagnostics_channel'

export const RUN_PHASE_CHANNEL = 'coupons:aggregator:phase'

export type RunPhaseEvent =
  /** a fetched batch of `file`'s records in `partition` was read into the partition state */
  | { phase: 'reading', runId: string, partition: number, file: string }
  /** `partition` was decided and its valid codes written to the staging set */
  | { phase: 'staging', runId: string, partition: number, validCount: number }
  /** the swap's MULTI was executed: the new set is live, the retired one not yet unlinked */
  | { phase: 'after-exec', runId: string, validCount: number }

export type RunPhase = RunPhaseEvent['phase']

const phases = channel(RUN_PHASE_CHANNEL)

export function publishRunPhase (event: RunPhaseEvent): void {
  if (phases.hasSubscribers) phases.publish(event)
}
