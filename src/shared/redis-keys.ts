// Every Redis key and channel of the system, under one prefix (DESIGN section 6), so that a test or
// a second deployment sharing a Redis isolates everything by choosing another REDIS_PREFIX.
//
// On a Redis Cluster a MULTI or a Lua script may only touch keys of one hash slot, so the keys are
// grouped by a hash tag (the part in braces decides the slot) derived from the prefix:
// - the set group: the live set, meta, the staging and retired sets, run results, the plan and the
//   staged partitions, which the swap's MULTI and the aggregator's scripts use together
//   (`{coupons:set}:valid`);
// - BullMQ: every queue under one tagged prefix, because a flow adds a parent and its children of
//   two queues in one script (`{coupons:bull}:ingest-runs:…`).
// Two prefixes give two tags, so two deployments neither share keys nor crowd one slot. A prefix
// that already holds a tag (`app:{coupons}:`) is used as it is: every key then shares its slot.
// Channels (pub/sub is cluster-wide) and the per-file ingest locks (one key per command) need no tag.

export interface RedisKeys {
  /** the live SET read by the API */
  valid: string
  /** HASH: generation, lastSwapAt, validCount, swapMs, segments, segmentsOffset, partitions, replayFrom (META) */
  meta: string
  /** channel that announces each swap */
  swaps: string
  /** the set being filled before the swap, per plan (a run planned again from other segments starts afresh) */
  staging: (planId: string) => string
  /** where the previous live set is renamed to before it is unlinked */
  retired: (generation: string) => string
  /** HASH per run: what the aggregator did with it (RUN_RESULT fields); kept 30 days */
  runResult: (runId: string) => string
  /** HASH: the run the aggregators are computing now (PLAN fields), written by the coordinator */
  plan: string
  /** HASH per plan: partition -> "validCount member stageMs" for each partition staged (verified) so far */
  staged: (planId: string) => string
  /** channel that announces a new plan to every aggregator */
  plans: string
  /** per-file lock: two runs' jobs for one file never produce it at the same time */
  ingestLock: (file: string) => string
  /** BullMQ's key prefix (a hash tag of its own) */
  bullPrefix: string
}

const HASH_TAG = /\{[^}]+\}/

/** True when the prefix already names a hash slot (a non-empty `{…}`). */
export function hasHashTag (prefix: string): boolean {
  return HASH_TAG.test(prefix)
}

export function redisKeys (prefix: string): RedisKeys {
  const tagged = hasHashTag(prefix)
  const set = tagged ? prefix : `{${prefix}set}:`
  return {
    valid: `${set}valid`,
    meta: `${set}meta`,
    swaps: `${prefix}swaps`,
    staging: (generation) => `${set}staging:${generation}`,
    retired: (generation) => `${set}retired:${generation}`,
    runResult: (runId) => `${set}run:${runId}`,
    plan: `${set}plan`,
    staged: (runId) => `${set}staged:${runId}`,
    plans: `${prefix}plans`,
    ingestLock: (file) => `${prefix}ingest-lock:${file}`,
    bullPrefix: tagged ? `${prefix}bull` : `{${prefix}bull}`
  }
}

/**
 * SCAN MATCH patterns that together cover every key of a prefix: the untagged ones start with the
 * prefix, the tagged groups with `{` and the prefix. For clean-up tools and tests.
 */
export function redisKeyPatterns (prefix: string): string[] {
  return hasHashTag(prefix) ? [`${prefix}*`] : [`${prefix}*`, `{${prefix}*`]
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
  /** the run id and a digest of the plan: what the staging keys are named after */
  planId: 'planId',
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
