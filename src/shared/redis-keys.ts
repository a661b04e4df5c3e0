// Every Redis key and channel of the system, under one prefix (DESIGN section 6), so that a test or
// a second deployment sharing a Redis isolates everything by choosing another REDIS_PREFIX.

export interface RedisKeys {
  /** the live SET read by the API */
  valid: string
  /** HASH: generation, lastSwapAt, validCount, swapMs, segments, segmentsOffset */
  meta: string
  /** channel that announces each swap */
  swaps: string
  /** the set being filled before the swap */
  staging: (generation: string) => string
  /** where the previous live set is renamed to before it is unlinked */
  retired: (generation: string) => string
  /** HASH per run: what the aggregator did with it (RUN_RESULT fields); kept 30 days */
  runResult: (runId: string) => string
  /** HASH: the run the aggregators are computing now (PLAN fields), written by the coordinator */
  plan: string
  /** HASH per run: partition -> "validCount member" for each partition staged (verified) so far */
  staged: (runId: string) => string
  /** channel that announces a new plan to every aggregator */
  plans: string
  /** per-file lock: two runs' jobs for one file never produce it at the same time */
  ingestLock: (file: string) => string
  /** BullMQ's key prefix */
  bullPrefix: string
}

export function redisKeys (prefix: string): RedisKeys {
  return {
    valid: `${prefix}valid`,
    meta: `${prefix}meta`,
    swaps: `${prefix}swaps`,
    staging: (generation) => `${prefix}staging:${generation}`,
    retired: (generation) => `${prefix}retired:${generation}`,
    runResult: (runId) => `${prefix}run:${runId}`,
    plan: `${prefix}plan`,
    staged: (runId) => `${prefix}staged:${runId}`,
    plans: `${prefix}plans`,
    ingestLock: (file) => `${prefix}ingest-lock:${file}`,
    bullPrefix: `${prefix}bull`
  }
}

/** Fields of the meta hash. */
export const META = {
  generation: 'generation',
  lastSwapAt: 'lastSwapAt',
  validCount: 'validCount',
  swapMs: 'swapMs',
  segments: 'segments',
  /**
   * The coupons.segments offset of the newest manifest the live set was computed from: how fresh
   * the applied data is (record order in that one-partition topic is time order).
   */
  segmentsOffset: 'segmentsOffset',
  /** KAFKA partitions the live set's segments were produced with (all of them share it) */
  partitions: 'partitions',
  /**
   * coupons.segments offset an aggregator replays from after a restart: nothing before it is
   * needed any more (every run before it has a result, and every file's current segment is after it)
   */
  replayFrom: 'replayFrom'
} as const

/** Fields of the plan hash. */
export const PLAN = {
  runId: 'runId',
  /** JSON RunPlan (src/aggregator/run-plan.ts) */
  body: 'body'
} as const

/**
 * Fields of a run's result hash, written by the aggregator and shown by GET /admin/runs/:runId.
 * state: 'applied' (swapped in), 'failed' (error says why; nothing swapped) or 'superseded'
 * (everything the run produced is already covered by a set from newer segments, so it never will
 * be applied).
 */
export const RUN_RESULT = {
  state: 'state',
  appliedAt: 'appliedAt',
  validCount: 'validCount',
  swapMs: 'swapMs',
  error: 'error',
  /** JSON: the segments (file, segmentId, runId) the applied set was computed from */
  segments: 'segments',
  /** JSON: aggregator instance -> the partitions it decided for the applied set */
  deciders: 'deciders',
  /** attempts the aggregators made (failed ones included) */
  attempts: 'attempts'
} as const

export const RUN_RESULT_TTL_SECONDS = 30 * 24 * 3600
