// Publishing a valid set to Redis (DESIGN section 6). The new set is filled under a staging key in
// pipelined batches while the API keeps reading the live one; then one MULTI renames the live set
// aside, renames the staging set in and updates the meta hash, guarded by WATCH so that older data
// (manifests earlier in coupons.segments) is never swapped over newer data. Readers see the old set or the new one, never a mix.
// The retired set is UNLINKed afterwards (freed in the background: a plain DEL or RENAME over a
// large set would block every SISMEMBER while it frees memory).
import type { Redis } from 'ioredis'
import { CouponsError } from '../shared/errors.js'
import { unpackCode } from '../shared/code-packing.js'
import type { Logger } from '../shared/logger.js'
import type { AppliedSegment } from '../shared/run-contract.js'
import { META, RUN_RESULT, RUN_RESULT_TTL_SECONDS, redisKeys, type RedisKeys } from '../shared/redis-keys.js'
import type { PackedCodes } from './partition-state.js'
import { publishRunPhase } from './run-phases.js'

const SADD_BATCH = 5000
const BATCHES_PER_PIPELINE = 8
const WATCH_ATTEMPTS = 10

/** A segment the set is computed from (the run view shows them per file). */
export type SegmentUsed = AppliedSegment

export type SwapOutcome =
  | { state: 'applied', appliedAt: string, validCount: number, swapMs: number }
  /** a set at least as fresh was applied first; nothing was changed */
  | { state: 'superseded', generation: string }

export interface SwapOptions {
  runId: string
  validCount: number
  segments: SegmentUsed[]
  /** coupons.segments offset of the newest manifest the set was computed from (its freshness) */
  segmentsOffset: bigint
  /** time already spent writing the staging set; `swapMs` = this + the atomic step */
  stagingMs: number
}

export interface AppliedState {
  generation: string | null
  /** null when nothing was applied */
  segmentsOffset: bigint | null
  segments: SegmentUsed[]
}

export type RunResultFields = Partial<Record<keyof typeof RUN_RESULT, string | number>>

export class ValidSetSwap {
  readonly keys: RedisKeys
  readonly #redis: Redis
  readonly #logger: Logger

  constructor (redis: Redis, prefix: string, logger: Logger) {
    this.#redis = redis
    this.keys = redisKeys(prefix)
    this.#logger = logger
  }

  async generation (): Promise<string | null> {
    return await this.#redis.hget(this.keys.meta, META.generation)
  }

  async applied (): Promise<AppliedState> {
    const [generation, offset, segments] = await this.#redis.hmget(this.keys.meta, META.generation, META.segmentsOffset, META.segments)
    return {
      generation,
      segmentsOffset: offset === null ? null : BigInt(offset),
      segments: segments === null ? [] : JSON.parse(segments) as SegmentUsed[]
    }
  }

  /**
   * Staging and retired sets left by a process that died before finishing its swap. One
   * aggregator owns the set, so at its start no other staging is in progress.
   */
  async deleteLeftovers (): Promise<string[]> {
    const found: string[] = []
    for (const pattern of [this.keys.staging('*'), this.keys.retired('*')]) {
      let cursor = '0'
      do {
        const [next, keys] = await this.#redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
        found.push(...keys)
        cursor = next
      } while (cursor !== '0')
    }
    if (found.length > 0) await this.#redis.unlink(...found)
    return found
  }

  async clearStaging (runId: string): Promise<void> {
    await this.#redis.unlink(this.keys.staging(runId))
  }

  /** Adds codes to the run's staging set, in pipelined batches; strings exist only per batch. */
  async stage (runId: string, codes: PackedCodes): Promise<void> {
    const key = this.keys.staging(runId)
    let pipeline = this.#redis.pipeline()
    let batches = 0
    for (let from = 0; from < codes.count; from += SADD_BATCH) {
      const to = Math.min(codes.count, from + SADD_BATCH)
      const members: string[] = new Array(to - from)
      for (let i = from; i < to; i++) members[i - from] = unpackCode(codes.pairs[2 * i], codes.pairs[2 * i + 1])
      pipeline.sadd(key, members)
      if (++batches === BATCHES_PER_PIPELINE) {
        await execPipeline(pipeline)
        pipeline = this.#redis.pipeline()
        batches = 0
      }
    }
    if (batches > 0) await execPipeline(pipeline)
  }

  /**
   * The atomic step. WATCH makes the check "is this set computed from newer manifests than the
   * applied one, and is the staging set complete" and the MULTI one unit: if meta, the live set or the staging set
   * change in between, EXEC does nothing and the check runs again.
   */
  async swap (options: SwapOptions): Promise<SwapOutcome> {
    const { runId, validCount, segments } = options
    const { meta, valid, swaps } = this.keys
    const staging = this.keys.staging(runId)
    const retired = this.keys.retired(runId)
    const redis = this.#redis
    const swapStarted = performance.now()
    for (let attempt = 1; attempt <= WATCH_ATTEMPTS; attempt++) {
      await redis.watch(meta, valid, staging)
      const [[generation, appliedOffset], liveExists, staged] = await Promise.all([
        redis.hmget(meta, META.generation, META.segmentsOffset), redis.exists(valid), redis.scard(staging)
      ])
      const offset = options.segmentsOffset
      if (generation !== null && appliedOffset !== null && offset <= BigInt(appliedOffset)) {
        await redis.unwatch()
        await redis.unlink(staging)
        return { state: 'superseded', generation }
      }
      if (staged !== validCount) {
        await redis.unwatch()
        throw new CouponsError('AGGREGATOR_STAGING_INCOMPLETE',
          `the staging set of run ${runId} holds ${staged} codes but ${validCount} were written; not swapping`, { retriable: true })
      }
      const appliedAt = new Date().toISOString()
      const swapMs = Math.round(options.stagingMs + performance.now() - swapStarted)
      const multi = redis.multi()
      if (liveExists === 1) multi.rename(valid, retired)
      if (validCount > 0) multi.rename(staging, valid)
      multi.hset(meta, {
        [META.generation]: runId,
        [META.lastSwapAt]: appliedAt,
        [META.validCount]: validCount,
        [META.swapMs]: swapMs,
        [META.segments]: JSON.stringify(segments),
        [META.segmentsOffset]: offset.toString()
      })
      const result = this.keys.runResult(runId)
      multi.del(result)
      multi.hset(result, {
        [RUN_RESULT.state]: 'applied',
        [RUN_RESULT.appliedAt]: appliedAt,
        [RUN_RESULT.validCount]: validCount,
        [RUN_RESULT.swapMs]: swapMs,
        [RUN_RESULT.segments]: JSON.stringify(segments)
      })
      multi.expire(result, RUN_RESULT_TTL_SECONDS)
      const replies = await multi.exec()
      if (replies === null) {
        this.#logger.debug({ runId, attempt }, 'a watched key changed during the swap; checking again')
        continue
      }
      const failed = replies.find(([err]) => err !== null)
      if (failed !== undefined) {
        // Unreachable with the checks above (each RENAME's source was checked under WATCH).
        throw new CouponsError('AGGREGATOR_SWAP_FAILED', `the swap of run ${runId} failed: ${failed[0]?.message}`, { cause: failed[0] })
      }
      publishRunPhase({ phase: 'after-exec', runId, validCount })
      if (liveExists === 1) await redis.unlink(retired)
      await redis.publish(swaps, JSON.stringify({ generation: runId, validCount, appliedAt }))
      return { state: 'applied', appliedAt, validCount, swapMs }
    }
    throw new CouponsError('AGGREGATOR_SWAP_CONTENDED', `the swap of run ${runId} kept being interrupted by other writers`, { retriable: true })
  }

  async hasResult (runId: string): Promise<boolean> {
    return await this.#redis.exists(this.keys.runResult(runId)) === 1
  }

  /** Writes a run's result (failed or superseded; an applied result is written inside the swap). */
  async recordResult (runId: string, fields: RunResultFields): Promise<void> {
    const key = this.keys.runResult(runId)
    await this.#redis.multi()
      .del(key)
      .hset(key, fields)
      .expire(key, RUN_RESULT_TTL_SECONDS)
      .exec()
  }
}

async function execPipeline (pipeline: ReturnType<Redis['pipeline']>): Promise<void> {
  const replies = await pipeline.exec()
  const failed = replies?.find(([err]) => err !== null)
  if (failed !== undefined) throw new CouponsError('AGGREGATOR_STAGING_FAILED', `writing the staging set failed: ${failed[0]?.message}`, { cause: failed[0], retriable: true })
}
