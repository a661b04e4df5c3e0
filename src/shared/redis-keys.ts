// Every Redis key and channel of the system, under one prefix (DESIGN section 6), so that a test or
// a second deployment sharing a Redis isolates everything by choosing another REDIS_PREFIX.

export interface RedisKeys {
  /** the live SET read by the API */
  valid: string
  /** HASH: generation, lastSwapAt, validCount, swapMs, segments */
  meta: string
  /** channel that announces each swap */
  swaps: string
  /** the set being filled before the swap */
  staging: (generation: string) => string
  /** where the previous live set is renamed to before it is unlinked */
  retired: (generation: string) => string
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
    bullPrefix: `${prefix}bull`
  }
}

/** Fields of the meta hash. */
export const META = {
  generation: 'generation',
  lastSwapAt: 'lastSwapAt',
  validCount: 'validCount',
  swapMs: 'swapMs',
  segments: 'segments'
} as const
