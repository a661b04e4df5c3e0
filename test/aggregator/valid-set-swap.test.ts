import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { packCode } from '../../src/shared/code-packing.js'
import { META, RUN_RESULT, RUN_RESULT_TTL_SECONDS } from '../../src/shared/redis-keys.js'
import { newRunId } from '../../src/shared/segments.js'
import type { PackedCodes } from '../../src/aggregator/decide-words.js'
import { STAGING_TTL_SECONDS, ValidSetSwap } from '../../src/aggregator/valid-set-swap.js'
import { deleteRedisPrefix, silentLogger, testConfig } from '../helpers/test-env.js'
import { waitFor } from '../../scripts/lib/wait-for.js'

function packed (codes: string[]): PackedCodes {
  const pairs = new Uint32Array(codes.length * 2)
  codes.forEach((code, i) => { const { hi, lo } = packCode(code); pairs[2 * i] = hi; pairs[2 * i + 1] = lo })
  return { pairs, count: codes.length }
}

async function expiresInAboutThirtyDays (redis: Redis, key: string): Promise<boolean> {
  const ttl = await redis.ttl(key)
  return ttl > RUN_RESULT_TTL_SECONDS - 60 && ttl <= RUN_RESULT_TTL_SECONDS
}

async function setup (t: Test): Promise<{ redis: Redis, swap: ValidSetSwap }> {
  const config = testConfig('swap')
  const redis = new Redis(config.redisUrl)
  t.teardown(async () => { await deleteRedisPrefix(redis, config.redisPrefix); await redis.quit() })
  return { redis, swap: new ValidSetSwap(redis, config.redisPrefix, silentLogger) }
}

/** Stages `codes` as the one partition of a run and swaps, as computed from manifests up to coupons.segments offset `segmentsOffset`. */
async function publish (swap: ValidSetSwap, runId: string, codes: string[], segmentsOffset: bigint, stageMs = 0): ReturnType<ValidSetSwap['swap']> {
  await swap.clearStaging(runId)
  await swap.stage(runId, packed(codes))
  await swap.recordStaged(runId, 0, { validCount: codes.length, member: 'm1', stageMs })
  return await swap.swap({ runId, partitions: 1, segments: [{ file: 'a', segmentId: 's', runId }], segmentsOffset })
}

t.test('a swap publishes the staged set, the meta hash, the run result and a message', async (t) => {
  const { redis, swap } = await setup(t)
  const listener = redis.duplicate()
  t.teardown(() => listener.quit())
  const messages: string[] = []
  await listener.subscribe(swap.keys.swaps)
  listener.on('message', (_channel, message) => messages.push(message))

  const codes = Array.from({ length: 12_345 }, (_, i) => `CODE${String(i).padStart(5, '0')}`)
  const runId = newRunId()
  const outcome = await publish(swap, runId, codes, 7n)
  t.equal(outcome.state, 'applied')
  t.equal(await redis.scard(swap.keys.valid), codes.length)
  t.equal(await redis.sismember(swap.keys.valid, 'CODE12344'), 1)
  const meta = await redis.hgetall(swap.keys.meta)
  t.equal(meta[META.generation], runId)
  t.equal(meta[META.validCount], String(codes.length))
  if (outcome.state !== 'applied') return
  t.equal(meta[META.lastSwapAt], outcome.appliedAt)
  t.equal(meta[META.swapMs], String(outcome.swapMs))
  t.same(JSON.parse(meta[META.segments]), [{ file: 'a', segmentId: 's', runId }])
  t.equal(meta[META.segmentsOffset], '7')
  t.same(await swap.applied(), { generation: runId, segmentsOffset: 7n, segments: [{ file: 'a', segmentId: 's', runId }], partitions: 1, replayFrom: null })
  const result = await redis.hgetall(swap.keys.runResult(runId))
  t.equal(result[RUN_RESULT.state], 'applied')
  t.equal(result[RUN_RESULT.validCount], String(codes.length))
  t.same(JSON.parse(result[RUN_RESULT.segments]), [{ file: 'a', segmentId: 's', runId }], 'the run result names the segments the set was computed from')
  t.same(JSON.parse(result[RUN_RESULT.deciders]), { m1: [0] }, 'the run result names who decided each partition')
  t.equal(await redis.ttl(swap.keys.valid), -1, 'the live set never expires (the staging set it was renamed from did)')
  t.equal(await redis.exists(swap.keys.staged(runId)), 0, 'the staged records are dropped')
  t.ok(await expiresInAboutThirtyDays(redis, swap.keys.runResult(runId)), 'the run result expires in 30 days')
  t.same(await redis.keys(`${swap.keys.staging('*')}`), [], 'no staging key is left')
  await waitFor('the swap to be announced', async () => messages.length >= 1)
  t.equal(messages.length, 1)
  t.equal(JSON.parse(messages[0]).generation, runId)
})

t.test('a newer run replaces the set and the old set is unlinked', async (t) => {
  const { redis, swap } = await setup(t)
  const first = newRunId(new Date(Date.now() - 1000))
  await publish(swap, first, ['OLDCODE1', 'BOTHCODE'], 1n)
  const second = newRunId()
  await publish(swap, second, ['NEWCODE1', 'BOTHCODE'], 2n)
  t.same((await redis.smembers(swap.keys.valid)).sort(), ['BOTHCODE', 'NEWCODE1'])
  t.equal(await redis.exists(swap.keys.retired(second)), 0)
  t.equal(await redis.hget(swap.keys.meta, META.generation), second)
})

t.test('a set from older manifests is never swapped over one from newer manifests, whatever the run ids', async (t) => {
  const { redis, swap } = await setup(t)
  const older = newRunId(new Date(Date.now() - 1000))
  const newer = newRunId()
  await publish(swap, older, ['NEWCODE1'], 5n)
  const outcome = await publish(swap, newer, ['OLDCODE1'], 3n)
  t.same(outcome, { state: 'superseded', generation: older })
  t.same(await redis.smembers(swap.keys.valid), ['NEWCODE1'])
  t.equal(await redis.hget(swap.keys.meta, META.generation), older)
  t.equal(await redis.exists(swap.keys.staging(newer)), 0, 'the staging set of older data is dropped')
  t.same(await publish(swap, newer, ['OLDCODE1'], 5n), { state: 'superseded', generation: older }, 'the same manifests are not applied twice')
})

t.test('a run requested earlier whose manifests are newer is applied over a later run', async (t) => {
  const { redis, swap } = await setup(t)
  const earlier = newRunId(new Date(Date.now() - 1000))
  const later = newRunId()
  t.equal((await publish(swap, later, ['LATERRUN'], 3n)).state, 'applied')
  t.equal((await publish(swap, earlier, ['EARLYRUN'], 6n)).state, 'applied')
  t.same(await redis.smembers(swap.keys.valid), ['EARLYRUN'])
  t.equal(await redis.hget(swap.keys.meta, META.generation), earlier)
  t.equal(await redis.hget(swap.keys.meta, META.segmentsOffset), '6')
})

t.test('an empty valid set removes the live set and records a count of 0', async (t) => {
  const { redis, swap } = await setup(t)
  await publish(swap, newRunId(new Date(Date.now() - 1000)), ['OLDCODE1'], 1n)
  const runId = newRunId()
  const outcome = await publish(swap, runId, [], 2n)
  t.equal(outcome.state, 'applied')
  t.equal(await redis.exists(swap.keys.valid), 0)
  t.equal(await redis.hget(swap.keys.meta, META.validCount), '0')
  t.equal(await redis.hget(swap.keys.meta, META.generation), runId)
})

t.test('a staging set holding other codes than its partitions recorded is never swapped in, and is dropped', async (t) => {
  const { redis, swap } = await setup(t)
  await publish(swap, newRunId(new Date(Date.now() - 1000)), ['OLDCODE1'], 1n)
  const runId = newRunId()
  await swap.stage(runId, packed(['NEWCODE1']))
  await swap.recordStaged(runId, 0, { validCount: 2, member: 'm1', stageMs: 1 })
  await t.rejects(swap.swap({ runId, partitions: 1, segments: [], segmentsOffset: 2n }), { code: 'AGGREGATOR_STAGING_INCOMPLETE' })
  t.same(await redis.smembers(swap.keys.valid), ['OLDCODE1'])
  t.equal(await redis.exists(swap.keys.staging(runId), swap.keys.staged(runId)), 0, 'its partitions are decided again from scratch')
  t.equal(await swap.hasResult(runId), false)
})

t.test('a run with a partition not yet staged is not swapped', async (t) => {
  const { redis, swap } = await setup(t)
  const runId = newRunId()
  await swap.stage(runId, packed(['NEWCODE1']))
  t.equal(await swap.recordStaged(runId, 1, { validCount: 1, member: 'm2', stageMs: 1 }), 1, 'one partition of two is staged')
  t.same(await swap.swap({ runId, partitions: 2, segments: [], segmentsOffset: 2n }), { state: 'incomplete', staged: 1 })
  t.equal(await redis.exists(swap.keys.valid), 0)
  t.equal(await swap.hasResult(runId), false)
  const ttl = await redis.ttl(swap.keys.staging(runId))
  t.ok(ttl > STAGING_TTL_SECONDS - 60 && ttl <= STAGING_TTL_SECONDS, `the staging set expires unless touched again (ttl ${ttl} s)`)
  t.ok(await redis.ttl(swap.keys.staged(runId)) > 0, 'so do its partition records')
})

t.test('partitions staged by two members swap once: concurrent swaps apply one and report the rest finished', async (t) => {
  const { redis, swap } = await setup(t)
  const runId = newRunId()
  await swap.setPlan(runId, '{}')
  await swap.stage(runId, packed(['PARTZERO', 'PARTZER2']))
  await swap.recordStaged(runId, 0, { validCount: 2, member: 'a-1', stageMs: 1000 })
  await swap.stage(runId, packed(['PARTONE1']))
  await swap.recordStaged(runId, 1, { validCount: 1, member: 'b-2', stageMs: 234 })
  const outcomes = await Promise.all(Array.from({ length: 5 }, async () => await swap.swap({ runId, partitions: 2, segments: [], segmentsOffset: 4n })))
  t.same(outcomes.map((o) => o.state).sort(), ['applied', 'finished', 'finished', 'finished', 'finished'])
  t.same((await redis.smembers(swap.keys.valid)).sort(), ['PARTONE1', 'PARTZER2', 'PARTZERO'])
  const result = await redis.hgetall(swap.keys.runResult(runId))
  t.same(JSON.parse(result[RUN_RESULT.deciders]), { 'a-1': [0], 'b-2': [1] })
  t.equal(result[RUN_RESULT.swapMs], '1234', 'swapMs is the staging time of every partition summed')
  t.equal(await redis.hget(swap.keys.meta, META.partitions), '2')
  t.equal(await swap.plan(), null, 'the plan of the applied run is withdrawn')
})

t.test('run results are recorded with an expiry', async (t) => {
  const { redis, swap } = await setup(t)
  t.equal(await swap.hasResult('R1'), false)
  await swap.recordResult('R1', { state: 'failed', error: 'AGGREGATOR_COUNT_MISMATCH: boom' })
  t.equal(await swap.hasResult('R1'), true)
  t.same(await redis.hgetall(swap.keys.runResult('R1')), { state: 'failed', error: 'AGGREGATOR_COUNT_MISMATCH: boom' })
  t.ok(await expiresInAboutThirtyDays(redis, swap.keys.runResult('R1')), 'the run result expires in 30 days')
})

t.test('a run\'s first result stands: a later failure does not overwrite it', async (t) => {
  const { redis, swap } = await setup(t)
  const runId = newRunId()
  await swap.setPlan(runId, '{}')
  await swap.stage(runId, packed(['STAGED01']))
  t.equal(await swap.recordResult(runId, { state: 'failed', error: 'AGGREGATOR_STAGING_FAILED: first' }), true)
  t.equal(await swap.recordResult(runId, { state: 'failed', error: 'AGGREGATOR_STAGING_FAILED: second' }), false)
  t.equal(await redis.hget(swap.keys.runResult(runId), RUN_RESULT.error), 'AGGREGATOR_STAGING_FAILED: first')
  t.equal(await redis.exists(swap.keys.staging(runId)), 0, 'its staging set is dropped')
  t.equal(await swap.plan(), null, 'its plan is withdrawn')
})

t.test('a run planned again under another plan id never counts the partitions staged under the first plan', async (t) => {
  const { redis, swap } = await setup(t)
  const runId = newRunId()
  const first = `${runId}.aaaaaaaaaaaa`
  const second = `${runId}.bbbbbbbbbbbb`
  await swap.setPlan(runId, '{}', first)
  await swap.stage(first, packed(['FROMPLAN1']))
  await swap.recordStaged(first, 0, { validCount: 1, member: 'm1', stageMs: 1 })
  // A newer segment of a file became current: the coordinator plans the run again.
  await swap.setPlan(runId, '{}', second)
  t.same(await swap.plan(), { runId, planId: second, body: '{}' })
  await swap.stage(second, packed(['FROMPLAN2']))
  await swap.recordStaged(second, 1, { validCount: 1, member: 'm2', stageMs: 1 })
  t.same(await swap.swap({ runId, planId: second, partitions: 2, segments: [], segmentsOffset: 3n }), { state: 'incomplete', staged: 1 },
    'partition 0 of the first plan does not complete the second')
  await swap.stage(second, packed(['FROMPLAN3']))
  await swap.recordStaged(second, 0, { validCount: 1, member: 'm2', stageMs: 1 })
  t.equal((await swap.swap({ runId, planId: second, partitions: 2, segments: [], segmentsOffset: 3n })).state, 'applied')
  t.same((await redis.smembers(swap.keys.valid)).sort(), ['FROMPLAN2', 'FROMPLAN3'], 'only codes decided under the plan that swapped')
  t.equal(await swap.plan(), null, 'the plan that swapped is withdrawn')
})
