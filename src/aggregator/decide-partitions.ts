// One instance's share of an aggregation (DESIGN section 5, issue 14): the partitions of the plan
// this instance owns, each read from Kafka into a packed state, decided, added to the run's
// staging set and recorded as staged. Reading stays on the main thread, one partition at a time;
// deciding (the sort) is slower than reading at full size, so it runs on a pool of worker threads
// (AGGREGATOR_DECIDE_THREADS): the next partition is read while the ones before are decided,
// several at once when the cores allow it. Each partition in the pipeline holds a state of 8 bytes
// a code of the largest partition (sized from the manifests), so their number is what bounds the
// memory: as many as AGGREGATOR_STATE_MEMORY_MB holds, at most one per thread plus the one being
// read, and never fewer than two (one read while one is decided).
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
  /** worker threads that decide partitions (AGGREGATOR_DECIDE_THREADS) */
  decideThreads: number
  /** the most bytes of partition states to hold at once (AGGREGATOR_STATE_MEMORY_MB); two states at least */
  stateMemoryBytes: number
}

export interface PartitionsStats {
  partitions: number[]
  codesRead: number
  validCount: number
  /** bytes of all the partition states held */
  stateBytes: number
  /** partition states held: one being read while the others are decided */
  states: number
  /** decide threads started */
  decideThreads: number
  /** partitions of the run staged (by any instance) after this instance's last one */
  staged: number
  /**
   * read, decide and stage summed over the partitions; decisions (on their threads) overlap the
   * reads and each other, so decide can exceed total
   */
  ms: { read: number, decide: number, stage: number, total: number }
}

/**
 * How many partition states of `stateBytes` each to hold with `threads` decide threads: as many as
 * `budgetBytes` holds, but no more than one per thread plus the one being read (a further state
 * would only wait), and never fewer than two, the least that overlaps reading with deciding.
 */
export function stateCount (budgetBytes: number, stateBytes: number, threads: number): number {
  return Math.min(threads + 1, Math.max(2, Math.floor(budgetBytes / stateBytes)))
}

export async function decidePartitions (options: DecidePartitionsOptions): Promise<PartitionsStats> {
  const { plan, planId, partitions, reader, swap, member, logger, signal } = options
  const { runId } = plan
  const started = performance.now()
  const ms = { read: 0, decide: 0, stage: 0, total: 0 }
  let capacity = 1
  for (const p of partitions) capacity = Math.max(capacity, expectedCodes(plan, p))
  const stateBytes = PartitionState.bytesFor(capacity)
  // A state or thread more than there are partitions would never be used.
  const stateTotal = Math.min(stateCount(options.stateMemoryBytes, stateBytes, options.decideThreads), Math.max(1, partitions.length))
  if (stateTotal * stateBytes > options.stateMemoryBytes) {
    logger.warn({ runId, states: stateTotal, stateBytes, stateMemoryBytes: options.stateMemoryBytes },
      'the partition states exceed AGGREGATOR_STATE_MEMORY_MB: two are the least (one read while one is decided), whatever AGGREGATOR_DECIDE_THREADS; ' +
      'raise the budget, or KAFKA_PARTITIONS for smaller partitions')
  }
  const states = Array.from({ length: stateTotal }, () => new PartitionState(capacity))
  // A thread decides one state at a time, so threads beyond the states would stay idle.
  const deciders = Array.from({ length: Math.min(options.decideThreads, stateTotal) }, () => new Decider())
  const freeStates = [...states]
  const freeDeciders = [...deciders]
  /** decisions and stagings running while the loop reads on; each settles without rejecting (see fail) */
  const inFlight = new Set<Promise<void>>()
  let codesRead = 0
  let validCount = 0
  let staged = 0

  // The first failure (of a read, or of any partition's decision or staging) is the one thrown. It
  // aborts the read in progress and stops new partitions from starting; decisions already running
  // finish and stage, since what is staged stands and a retry skips it. Only `signal` (the
  // partition moved, the plan changed, closing) stops them from staging.
  const failed = new AbortController()
  const fail = (err: unknown): void => { if (!failed.signal.aborted) failed.abort(err) }
  const stop = AbortSignal.any([signal, failed.signal])

  const decideAndStage = async (partition: number, state: PartitionState, decider: Decider): Promise<void> => {
    const valid = await decider.decide(state, plan.minFiles)
    ms.decide += valid.ms
    signal.throwIfAborted()
    const at = performance.now()
    await swap.stage(planId, valid)
    const stageMs = performance.now() - at
    ms.stage += stageMs
    signal.throwIfAborted()
    // Two partitions may be recorded at once: the count after this instance's last record is the
    // largest one returned (records are only added), whichever reply came back last.
    staged = Math.max(staged, await swap.recordStaged(planId, partition, { validCount: valid.count, member, stageMs }))
    validCount += valid.count
    logger.debug({ runId, partition, codes: state.length, sorted: valid.sorted, valid: valid.count }, 'partition decided')
    publishRunPhase({ phase: 'staging', runId, partition, validCount: valid.count })
  }
  const start = (partition: number, state: PartitionState, decider: Decider): void => {
    const task: Promise<void> = decideAndStage(partition, state, decider).then(() => {
      freeStates.push(state)
      freeDeciders.push(decider)
    }, fail).finally(() => { inFlight.delete(task) })
    inFlight.add(task)
  }
  /**
   * Waits until `pool` has a free item. One that is not free is held by a task in flight or by a
   * failed one (then `stop` is aborted), so the wait ends.
   */
  const whenFree = async (pool: unknown[]): Promise<void> => {
    for (;;) {
      stop.throwIfAborted()
      if (pool.length > 0) return
      await Promise.race(inFlight)
    }
  }

  try {
    for (const partition of partitions) {
      stop.throwIfAborted()
      if (partition >= plan.partitions) throw new CouponsError('AGGREGATOR_BAD_PLAN', `partition ${partition} is not one of the plan's ${plan.partitions}`)
      await whenFree(freeStates)
      const state = freeStates.pop() as PartitionState
      state.reset(expectedCodes(plan, partition))
      const at = performance.now()
      const counts = await reader.read({ runId, partition, partitions: plan.partitions, reads: readsOf(plan, partition), state, signal: stop })
      for (const { codes } of counts) codesRead += codes
      ms.read += performance.now() - at
      await whenFree(freeDeciders)
      start(partition, state, freeDeciders.pop() as Decider)
    }
  } catch (err) {
    fail(err)
  } finally {
    // Every decision settles before its thread is stopped: none is left holding a state or a reply.
    await Promise.all(inFlight)
    await Promise.all(deciders.map(async (decider) => { await decider.close() }))
  }
  if (failed.signal.aborted) throw failed.signal.reason
  ms.total = performance.now() - started
  for (const key of Object.keys(ms) as Array<keyof typeof ms>) ms[key] = Math.round(ms[key])
  return {
    partitions,
    codesRead,
    validCount,
    stateBytes: states.reduce((sum, state) => sum + state.bytes, 0),
    states: states.length,
    decideThreads: deciders.length,
    staged,
    ms
  }
}
