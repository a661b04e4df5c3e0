// What bench:api and bench:api-ab load the api with: a published set as the aggregator leaves it,
// and the request paths of the mix checkout sends.
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { META, redisKeys } from '../../src/shared/redis-keys.js'

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
const randomCode = (length: number): string => Array.from(randomBytes(length), (byte) => ALPHABET[byte % ALPHABET.length]).join('')

/** Publishes `count` random valid codes under `prefix` (the set and its meta); returns them. */
export async function publishBenchSet (redis: Redis, prefix: string, count: number): Promise<string[]> {
  const keys = redisKeys(prefix)
  const valid: string[] = []
  for (let i = 0; i < count; i++) valid.push(randomCode(8 + (i % 3)))
  for (let i = 0; i < valid.length; i += 10_000) await redis.sadd(keys.valid, ...valid.slice(i, i + 10_000))
  await redis.hset(keys.meta, { [META.generation]: 'bench', [META.lastSwapAt]: new Date().toISOString(), [META.validCount]: String(valid.length) })
  return valid
}

/** 1000 lookup paths: 50 % valid, 30 % well formed but invalid, 20 % malformed. */
export function lookupPaths (valid: string[]): string[] {
  const paths: string[] = []
  for (let i = 0; i < 1000; i++) {
    const kind = i % 10
    if (kind < 5) paths.push(`/coupons/${valid[(i * 7919) % valid.length]}`)
    else if (kind < 8) paths.push(`/coupons/${randomCode(9)}`)
    else paths.push(kind === 8 ? `/coupons/${randomCode(7)}` : `/coupons/${encodeURIComponent("' OR 1=1 --")}`)
  }
  return paths
}
