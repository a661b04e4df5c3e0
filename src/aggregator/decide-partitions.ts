// One instance's share of an aggregation (DESIGN section 5, issue 14): the partitions of the plan
// this instance owns, each read from Kafka into a packed state, decided, added to the run's
// staging set and recorded as staged. Peak memory is two partitions' states, sized from the
// manifests: one being read while the other is decided on a worker thread.
import { CouponsError } from '../shared/errors.js'
import type { Logger } from '../shared/logger.js'
import { Decider } from './decider.js'
import { PartitionState } from './partition-state.js'
import type { PartitionReader } from './partition-reader.js'
import { expectedCodes, readsOf, type RunPlan } from './run-plan.js'
import { publishRunPhase } from './run-phases.js'
import type { ValidSetSwap } from './valid-set-swap.js'

export interface DecidePartitionsOptions {
  plan: RunPlan
  /** the plan's id: its partitions are staged under it */
  planId: string
  /** the partitions to decide, in order */
  partitions: number[]
  reader: PartitionReader
  swap: ValidSetSwap
  /** this instance's name in the staged records */
  member: string
  logger: Logger
  /** aborts between and within partitions: a partition moved away, the plan changed, or closing */
  signal: AbortSignal
}

export interface PartitionsStats {
  partitions: number[]
  codesRead: number
  validCount: number
  stateBytes: number
  /** partitions of the run staged (by any instance) after this instance's last one */
  staged: number
  /** read, decide and stage summed over the partitions; decide (on its own thread) overlaps the next read */
  ms: { read: number, decide: number, stage: number, total: number }
}

export async function decidePartitions (options: DecidePartitionsOptions): Promise<PartitionsStats> {
  const { plan, planId, partitions, reader, swap, member, logger, signal } = options
  const { runId } = plan
  const started = performance.now()
  const ms = { read: 0, decide: 0, stage: 0, total: 0 }
  let capacity = 1
  for (const p of partitions) capacity = Math.max(capacity, expectedCodes(plan, p))
  // Two states: partition p is decided on the Decider's thread while the next one is read into the other.
  const states = [new PartitionState(capacity), new PartitionState(capacity)]
  const decider = new Decider()
  let codesRead = 0
  let validCount = 0
  let staged = 0
  /** the decision and staging of the partition read last, running while the next one is read */
  let deciding: Promise<void> | null = null
  const decideAndStage = async (partition: number, state: PartitionState): Promise<void> => {
    const valid = await decider.decide(state, plan.minFiles)
    ms.decide += valid.ms
    signal.throwIfAborted()
    const at = performance.now()
    await swap.stage(planId, valid)
    const stageMs = performance.now() - at
    ms.stage += stageMs
    signal.throwIfAborted()
    staged = await swap.recordStaged(planId, partition, { validCount: valid.count, member, stageMs })
    validCount += valid.count
    logger.debug({ runId, partition, codes: state.length, valid: valid.count }, 'partition decided')
    publishRunPhase({ phase: 'staging', runId, partition, validCount: valid.count })
  }
  try {
    for (const [i, partition] of partitions.entries()) {
      signal.throwIfAborted()
      if (partition >= plan.partitions) throw new CouponsError('AGGREGATOR_BAD_PLAN', `partition ${partition} is not one of the plan's ${plan.partitions}`)
      const state = states[i % 2]
      state.reset(expectedCodes(plan, partition))
      const at = performance.now()
      const counts = await reader.read({ runId, partition, partitions: plan.partitions, reads: readsOf(plan, partition), state, signal })
      for (const { codes } of counts) codesRead += codes
      ms.read += performance.now() - at
      // The other state is free again once its partition is decided and staged.
      await deciding
      deciding = decideAndStage(partition, state)
      // Awaited above or in the finally block; a failure meanwhile must not count as unhandled.
      deciding.catch(() => {})
    }
    await deciding
  } finally {
    await deciding?.catch(() => {})
    await decider.close()
  }
  ms.total = performance.now() - started
  for (const key of Object.keys(ms) as Array<keyof typeof ms>) ms[key] = Math.round(ms[key])
  return { partitions, codesRead, validCount, stateBytes: states[0].bytes + states[1].bytes, staged, ms }
}
