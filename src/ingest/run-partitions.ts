// Which runs may be produced under the configured KAFKA_PARTITIONS. The aggregator decides a run
// from the current segment of every file, and those must all share one partition count (partition
// p of every topic holds the same slice of the key space only under one `hash mod P`). A run of
// every configured file re-produces them all, so it may change the count: that is how an operator
// re-partitions, while the live set keeps serving. A run of only some files would mix its new
// segments with the others' older ones, so it is refused up front when the configured count is not
// the one the live set was built with (META.partitions; unknown = allowed).
import type { Config } from '../shared/config.js'
import { CouponsError } from '../shared/errors.js'
import { META, redisKeys } from '../shared/redis-keys.js'
import type { RedisClient } from '../shared/redis.js'

/** A run of every configured file (in any order): the only kind that may change the partition count. */
export function isFullRun (config: Pick<Config, 'couponFiles'>, files: readonly string[]): boolean {
  return config.couponFiles.every((file) => files.includes(file))
}

/** The partition count the live set's segments were produced with, or null when the meta hash does not say. */
export async function livePartitions (redis: RedisClient, redisPrefix: string): Promise<number | null> {
  const value = await redis.hget(redisKeys(redisPrefix).meta, META.partitions)
  const count = Number(value ?? Number.NaN)
  return Number.isInteger(count) && count > 0 ? count : null
}

/**
 * Throws INGEST_PARTITIONS_CHANGED (not retriable: only a full run or the old KAFKA_PARTITIONS
 * helps) when `files` are a partial run and the configured count differs from the live set's.
 */
export function checkRunPartitions (config: Pick<Config, 'couponFiles' | 'kafkaPartitions'>, files: readonly string[], live: number | null): void {
  if (live === null || live === config.kafkaPartitions || isFullRun(config, files)) return
  throw new CouponsError('INGEST_PARTITIONS_CHANGED',
    `KAFKA_PARTITIONS is ${config.kafkaPartitions} but the live set was built from segments with ${live} partitions; ` +
    `run a full ingest (all files: ${config.couponFiles.join(', ')}) to re-partition, not only ${files.join(', ')}`)
}
