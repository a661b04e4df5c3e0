// Publishing a valid set to Redis (DESIGN section 6), by several aggregator instances at once
// (issue 14). The coordinator writes the run's plan; each instance decides the partitions it owns
// and adds their valid codes to the run's staging set in pipelined batches, then records the
// partition as staged with its verified count. When every partition of the plan is staged, one
// Lua script checks it all and swaps, atomically: it renames the live set aside, renames the
// staging set in and updates the meta hash, but only if the set is computed from newer manifests
// than the applied one (coupons.segments offsets), every partition is recorded, and the staging
// set holds exactly the sum of their counts. Readers see the old set or the new one, never a mix,
// and a run is swapped at most once however many instances try: the script is the only writer of
// a run's `applied` result, and it refuses a run that already has a result.
// Every key the script touches shares one hash slot (redis-keys.ts), so this works on a Redis
// Cluster. The retired set is UNLINKed afterwards (freed in the background: a plain DEL or RENAME
// over a large set would block every SISMEMBER while it frees memory).
import { CouponsError } from '../shared/errors.js'
import { unpackCode } from '../shared/code-packing.js'
import type { Logger } from '../shared/logger.js'
import type { RedisClient } from '../shared/redis.js'
import type { AppliedSegment } from '../shared/run-contract.js'
import { META, PLAN, RUN_RESULT, RUN_RESULT_TTL_SECONDS, redisKeys, type RedisKeys } from '../shared/redis-keys.js'
import type { PackedCodes } from './decide-words.js'
import { publishRunPhase } from './run-phases.js'

const SADD_BATCH = 5000
const BATCHES_PER_PIPELINE = 8
/**
 * A staging set and its partition records expire unless a run touches them again: an instance
 * killed mid-run (or a plan replaced by a newer one) leaves nothing behind for good. Each stage
 * call renews the expiry, so only a run idle this long loses its staging work (and redoes it).
 */
export const STAGING_TTL_SECONDS = 6 * 3600

/** A retired set the swapping instance did not live to unlink (unlinkRetired) expires by itself. */
const RETIRED_TTL_SECONDS = 3600

/** A segment the set is computed from (the run view shows them per file). */
export type SegmentUsed = AppliedSegment

export type SwapOutcome =
  | { state: 'applied', appliedAt: string, validCount: number, swapMs: number, deciders: Record<string, number[]> }
  /** a set at least as fresh was applied first; nothing was changed */
  | { state: 'superseded', generation: string }
  /** not every partition of the plan is staged yet: nothing was changed */
  | { state: 'incomplete', staged: number }
  /** the run already has a result (another instance swapped it, or it failed): nothing was changed */
  | { state: 'finished', result: string }

export interface SwapOptions {
  runId: string
  /** the plan whose staged partitions to swap in (default: the run id) */
  planId?: string
  /** partitions of the run's plan: all must be staged */
  partitions: number
  segments: SegmentUsed[]
  /** coupons.segments offset of the newest manifest the set was computed from (its freshness) */
  segmentsOffset: bigint
}

export interface AppliedState {
  generation: string | null
  /** null when nothing was applied */
  segmentsOffset: bigint | null
  segments: SegmentUsed[]
  /** partitions the live set's segments were produced with; null when unknown */
  partitions: number | null
  /** where a restarted coordinator replays coupons.segments from; null: its start */
  replayFrom: bigint | null
}

/** One partition's record in the staged hash. */
export interface StagedPartition {
  validCount: number
  /** the aggregator instance that decided it */
  member: string
  /** time spent writing it to the staging set */
  stageMs: number
}

export type RunResultFields = Partial<Record<keyof typeof RUN_RESULT, string | number>>

// KEYS: meta, valid, staging, retired, result, staged, plan
// ARGV: runId, partitions, segmentsOffset, segments JSON, appliedAt, result TTL, planId
// Offsets compare as numbers: Lua's doubles are exact up to 2^53, far beyond a small topic's offsets.
const SWAP_SCRIPT = `
local meta, valid, staging, retired, result, staged, plan = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local runId, partitions, offset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function dropPlan ()
  if redis.call('hget', plan, '${PLAN.planId}') == ARGV[7] then redis.call('del', plan) end
end
if redis.call('exists', result) == 1 then
  return {'finished', redis.call('hget', result, '${RUN_RESULT.state}') or ''}
end
local generation = redis.call('hget', meta, '${META.generation}')
local applied = redis.call('hget', meta, '${META.segmentsOffset}')
if generation and applied and offset <= tonumber(applied) then
  redis.call('unlink', staging, staged)
  dropPlan()
  return {'superseded', generation}
end
local fields = redis.call('hgetall', staged)
if #fields / 2 ~= partitions then return {'incomplete', tostring(#fields / 2)} end
local sum, stageMs, deciders = 0, 0, {}
for i = 1, #fields, 2 do
  local partition = tonumber(fields[i])
  if partition == nil or partition < 0 or partition >= partitions then return {'mismatch', 'a record of partition ' .. fields[i], 'partitions 0..' .. (partitions - 1)} end
  local count, member, ms = string.match(fields[i + 1], '^(%d+) (%S+) (%d+)$')
  sum = sum + tonumber(count)
  stageMs = stageMs + tonumber(ms)
  deciders[member] = deciders[member] or {}
  table.insert(deciders[member], partition)
end
local scard = redis.call('scard', staging)
if scard ~= sum then return {'mismatch', tostring(scard), tostring(sum)} end
local liveExists = redis.call('exists', valid)
if liveExists == 1 then
  redis.call('rename', valid, retired)
  -- Unlinked right after; should this process die first, an expiry backs up the next coordinator's unlink.
  redis.call('expire', retired, ${RETIRED_TTL_SECONDS})
end
if sum > 0 then
  redis.call('rename', staging, valid)
  redis.call('persist', valid)
end
local decidersJson = cjson.encode(deciders)
redis.call('hset', meta,
  '${META.generation}', runId, '${META.lastSwapAt}', ARGV[5], '${META.validCount}', sum, '${META.swapMs}', stageMs,
  '${META.segments}', ARGV[4], '${META.segmentsOffset}', ARGV[3], '${META.partitions}', partitions)
redis.call('del', result)
redis.call('hset', result, '${RUN_RESULT.state}', 'applied', '${RUN_RESULT.appliedAt}', ARGV[5], '${RUN_RESULT.validCount}', sum,
  '${RUN_RESULT.swapMs}', stageMs, '${RUN_RESULT.segments}', ARGV[4], '${RUN_RESULT.deciders}', decidersJson)
redis.call('expire', result, tonumber(ARGV[6]))
redis.call('del', staged)
dropPlan()
return {'applied', tostring(sum), tostring(stageMs), decidersJson, tostring(liveExists)}
`

// KEYS: result, staging, staged, plan; ARGV: runId, TTL, then field/value pairs.
// Writes a result only where none exists: the first outcome of a run stands. Any plan of the run goes.
const RESULT_SCRIPT = `
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV, 3))
redis.call('expire', KEYS[1], tonumber(ARGV[2]))
redis.call('unlink', KEYS[2], KEYS[3])
if redis.call('hget', KEYS[4], '${PLAN.runId}') == ARGV[1] then redis.call('del', KEYS[4]) end
return 1
`

// KEYS: meta; ARGV: offset. Moves replayFrom forward only, atomically (two coordinators during a
// rebalance must not move it back).
const ADVANCE_SCRIPT = `
local current = redis.call('hget', KEYS[1], '${META.replayFrom}')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('hset', KEYS[1], '${META.replayFrom}', ARGV[1])
return 1
`

export class ValidSetSwap {
  readonly keys: RedisKeys
  readonly #redis: RedisClient
  readonly #logger: Logger

  constructor (redis: RedisClient, prefix: string, logger: Logger) {
    this.#redis = redis
    this.keys = redisKeys(prefix)
    this.#logger = logger
  }

  async generation (): Promise<string | null> {
    return await this.#redis.hget(this.keys.meta, META.generation)
  }

  async applied (): Promise<AppliedState> {
    const [generation, offset, segments, partitions, replayFrom] = await this.#redis.hmget(this.keys.meta,
      META.generation, META.segmentsOffset, META.segments, META.partitions, META.replayFrom)
    return {
      generation,
      segmentsOffset: offset === null ? null : BigInt(offset),
      segments: segments === null ? [] : JSON.parse(segments) as SegmentUsed[],
      partitions: partitions === null ? null : Number(partitions),
      replayFrom: replayFrom === null ? null : BigInt(replayFrom)
    }
  }

  /** Moves the replay start forward (never back: another coordinator may have moved it further). */
  async advanceReplayFrom (offset: bigint): Promise<void> {
    await this.#redis.eval(ADVANCE_SCRIPT, 1, this.keys.meta, offset.toString())
  }

  /**
   * Unlinks the set the swap of `generation` retired, left behind when its instance died right
   * after the swap (the coordinator calls it for the applied generation; usually there is none).
   */
  async unlinkRetired (generation: string): Promise<void> {
    await this.#redis.unlink(this.keys.retired(generation))
  }

  /** Drops a plan's staging set and partition records: its partitions are decided again. */
  async clearStaging (planId: string): Promise<void> {
    await this.#redis.unlink(this.keys.staging(planId), this.keys.staged(planId))
  }

  /** Adds codes to the plan's staging set, in pipelined batches; strings exist only per batch. */
  async stage (planId: string, codes: PackedCodes): Promise<void> {
    const key = this.keys.staging(planId)
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
    pipeline.expire(key, STAGING_TTL_SECONDS)
    await execPipeline(pipeline)
  }

  /** Records a partition as staged (after its codes are in the staging set); returns how many are. */
  async recordStaged (planId: string, partition: number, staged: StagedPartition): Promise<number> {
    const key = this.keys.staged(planId)
    const replies = await this.#redis.multi()
      .hset(key, String(partition), `${staged.validCount} ${staged.member} ${Math.round(staged.stageMs)}`)
      .expire(key, STAGING_TTL_SECONDS)
      .hlen(key)
      .exec()
    const failed = replies?.find(([err]) => err !== null)
    if (replies === null || failed !== undefined) {
      throw new CouponsError('AGGREGATOR_STAGING_FAILED', `recording partition ${partition} of plan ${planId} as staged failed: ${failed?.[0]?.message ?? 'transaction aborted'}`, { retriable: true })
    }
    return replies[2][1] as number
  }

  async stagedPartitions (planId: string): Promise<Map<number, StagedPartition>> {
    const fields = await this.#redis.hgetall(this.keys.staged(planId))
    const staged = new Map<number, StagedPartition>()
    for (const [partition, value] of Object.entries(fields)) {
      const [validCount, member, stageMs] = value.split(' ')
      staged.set(Number(partition), { validCount: Number(validCount), member, stageMs: Number(stageMs) })
    }
    return staged
  }

  /** The run the aggregators are computing now, its plan's id and JSON; null when none. */
  async plan (): Promise<{ runId: string, planId: string, body: string } | null> {
    const [runId, planId, body] = await this.#redis.hmget(this.keys.plan, PLAN.runId, PLAN.planId, PLAN.body)
    return runId === null || planId === null || body === null ? null : { runId, planId, body }
  }

  /** Makes this plan the one to compute (replacing any other) and tells every instance its id. */
  async setPlan (runId: string, body: string, planId = runId): Promise<void> {
    await this.#redis.multi()
      .del(this.keys.plan)
      .hset(this.keys.plan, PLAN.runId, runId, PLAN.planId, planId, PLAN.body, body)
      .exec()
    await this.#redis.publish(this.keys.plans, planId)
  }

  /**
   * The atomic step (SWAP_SCRIPT): swaps the staged set in when every partition is staged with
   * verified counts; otherwise changes nothing and says why. A staging set that holds other codes
   * than its partitions recorded is dropped, so that the partitions are decided again.
   */
  async swap (options: SwapOptions): Promise<SwapOutcome> {
    const { runId, partitions, segments } = options
    const planId = options.planId ?? runId
    const { meta, valid } = this.keys
    const staging = this.keys.staging(planId)
    const retired = this.keys.retired(runId)
    const appliedAt = new Date().toISOString()
    const reply = await this.#redis.eval(SWAP_SCRIPT, 7,
      meta, valid, staging, retired, this.keys.runResult(runId), this.keys.staged(planId), this.keys.plan,
      runId, partitions, options.segmentsOffset.toString(), JSON.stringify(segments), appliedAt, RUN_RESULT_TTL_SECONDS, planId) as string[]
    switch (reply[0]) {
      case 'finished': return { state: 'finished', result: reply[1] }
      case 'superseded': return { state: 'superseded', generation: reply[1] }
      case 'incomplete': return { state: 'incomplete', staged: Number(reply[1]) }
      case 'mismatch':
        await this.clearStaging(planId)
        throw new CouponsError('AGGREGATOR_STAGING_INCOMPLETE',
          `the staging set of run ${runId} holds ${reply[1]} codes but its partitions recorded ${reply[2]}; not swapping, deciding them again`, { retriable: true })
    }
    const validCount = Number(reply[1])
    publishRunPhase({ phase: 'after-exec', runId, validCount })
    if (reply[4] === '1') await this.#redis.unlink(retired)
    await this.#redis.publish(this.keys.swaps, JSON.stringify({ generation: runId, validCount, appliedAt }))
    this.#logger.debug({ runId, validCount }, 'swapped')
    return { state: 'applied', appliedAt, validCount, swapMs: Number(reply[2]), deciders: JSON.parse(reply[3]) as Record<string, number[]> }
  }

  async hasResult (runId: string): Promise<boolean> {
    return await this.#redis.exists(this.keys.runResult(runId)) === 1
  }

  async resultState (runId: string): Promise<string | null> {
    return await this.#redis.hget(this.keys.runResult(runId), RUN_RESULT.state)
  }

  /**
   * Writes a run's result (failed or superseded; an applied result is written by the swap) unless
   * it has one already, and drops the staging work of `planId` and any plan of the run. Returns false when a result
   * existed (the run was swapped or ended meanwhile, elsewhere).
   */
  async recordResult (runId: string, fields: RunResultFields, planId = runId): Promise<boolean> {
    const args = Object.entries(fields).flatMap(([field, value]) => [field, String(value)])
    const written = await this.#redis.eval(RESULT_SCRIPT, 4,
      this.keys.runResult(runId), this.keys.staging(planId), this.keys.staged(planId), this.keys.plan,
      runId, RUN_RESULT_TTL_SECONDS, ...args)
    return written === 1
  }
}

async function execPipeline (pipeline: ReturnType<RedisClient['pipeline']>): Promise<void> {
  const replies = await pipeline.exec()
  const failed = replies?.find(([err]) => err !== null)
  if (failed !== undefined) throw new CouponsError('AGGREGATOR_STAGING_FAILED', `writing the staging set failed: ${failed[0]?.message}`, { cause: failed[0], retriable: true })
}
