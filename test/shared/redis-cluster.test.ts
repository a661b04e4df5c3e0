// The service on a real Redis Cluster (three masters, started by this test): the aggregator
// publishes a run on it through its real swap script, the API answers from a set living on it, the swap's MULTI and a Lua script over the set's keys run because
// the keys share a hash tag (and fail with CROSSSLOT under the old, untagged names), and BullMQ
// queues, workers and flows work under the tagged prefix.
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FlowProducer, Queue, Worker } from 'bullmq'
import { Cluster, Redis } from 'ioredis'
import t from 'tap'
import { Aggregator } from '../../src/aggregator/aggregator.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { produceFile } from '../../src/ingest/produce-file.js'
import { publishRunRecord } from '../../src/ingest/run-record.js'
import { META, RUN_RESULT, redisKeys } from '../../src/shared/redis-keys.js'
import { newRunId } from '../../src/shared/segments.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { createRedis, type RedisClient } from '../../src/shared/redis.js'
import { publishSet, testApp } from '../helpers/api-env.js'
import { redisClusterSkipReason, startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js'
import { deleteRedisPrefix, deleteTopics, silentLogger, testConfig, testKafka } from '../helpers/test-env.js'

/** The names the keys had before they were hash-tagged: one slot each. */
function untaggedKeys (prefix: string, runId: string) {
  return {
    valid: `${prefix}valid`,
    meta: `${prefix}meta`,
    staging: `${prefix}staging:${runId}`,
    retired: `${prefix}retired:${runId}`,
    runResult: `${prefix}run:${runId}`
  }
}

/** The swap's shape (src/aggregator/valid-set-swap.ts): live set aside, staging in, meta and result written. */
function swapMulti (redis: RedisClient | Redis, keys: ReturnType<typeof untaggedKeys>, runId: string) {
  return redis.multi()
    .rename(keys.valid, keys.retired)
    .rename(keys.staging, keys.valid)
    .hset(keys.meta, META.generation, runId)
    .del(keys.runResult)
    .hset(keys.runResult, RUN_RESULT.state, 'applied')
    .expire(keys.runResult, 60)
}

const SWAP_SCRIPT = `
if redis.call('exists', KEYS[1]) == 1 then redis.call('rename', KEYS[1], KEYS[4]) end
redis.call('rename', KEYS[3], KEYS[1])
redis.call('hset', KEYS[2], ARGV[2], ARGV[1])
redis.call('hset', KEYS[5], ARGV[3], 'applied')
return redis.call('scard', KEYS[1])`

async function slotOf (redis: RedisClient, key: string): Promise<number> {
  return await redis.cluster('KEYSLOT', key) as number
}

/** A plain connection to the master that owns the key's slot: what a cluster-unaware client talks to. */
async function ownerOf (cluster: Cluster, key: string): Promise<Redis> {
  const slot = await slotOf(cluster, key)
  const owner = cluster.nodes('master').find((node) => (cluster.slots[slot] ?? []).includes(`${node.options.host ?? ''}:${node.options.port ?? ''}`))
  if (owner === undefined) throw new Error(`no master owns slot ${slot}`)
  return new Redis({ host: owner.options.host, port: owner.options.port, lazyConnect: true })
}

const skip = redisClusterSkipReason()

t.test('on a three-master Redis Cluster', { skip }, async (t) => {
  const cluster: TestRedisCluster = await startRedisCluster(t)
  // REDIS_URL points nowhere: on a cluster it may bring credentials, never a server to talk to.
  const clusterEnv = { REDIS_CLUSTER_NODES: cluster.env, REDIS_URL: 'redis://127.0.0.1:1' }

  t.test('the api answers 200 and 404 from a set living on the cluster', async (t) => {
    const { app, config, redis } = await testApp(t, clusterEnv)
    t.ok(app.redis instanceof Cluster, 'the app talks to the cluster')
    t.equal(app.redis.status, 'ready', 'and is connected to it')
    await publishSet(redis, config.redisPrefix, ['HAPPYHRS', 'BUYGETON1'])
    t.equal((await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode, 200, 'a member is valid')
    t.equal((await app.inject({ method: 'GET', url: '/coupons/BUYGETON1' })).statusCode, 200, 'so is the other')
    t.equal((await app.inject({ method: 'GET', url: '/coupons/NOTVALID1' })).statusCode, 404, 'a non-member of a published set is invalid')
    await redis.del(redisKeys(config.redisPrefix).valid)
    t.equal((await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode, 404, 'the answer follows the set on the cluster')
  })

  t.test("the swap's MULTI runs over the tagged keys and is refused with CROSSSLOT over the old names", async (t) => {
    const config = testConfig('cluster-swap', clusterEnv)
    const redis = createRedis(config, 'worker', silentLogger)
    t.teardown(async () => { await deleteRedisPrefix(redis, config.redisPrefix); redis.disconnect() })
    if (!(redis instanceof Cluster)) throw new Error('createRedis made no cluster client from REDIS_CLUSTER_NODES')
    const runId = 'run-2'
    const all = redisKeys(config.redisPrefix)
    const keys = { valid: all.valid, meta: all.meta, staging: all.staging(runId), retired: all.retired(runId), runResult: all.runResult(runId) }
    const old = untaggedKeys(config.redisPrefix, runId)

    const slots = await Promise.all(Object.values(keys).map(async (key) => await slotOf(redis, key)))
    t.equal(new Set(slots).size, 1, `the tagged keys share one slot (${slots.join(', ')})`)
    const oldSlots = await Promise.all(Object.values(old).map(async (key) => await slotOf(redis, key)))
    t.ok(new Set(oldSlots).size > 1, `the old names spread over slots (${oldSlots.join(', ')})`)

    await redis.sadd(keys.valid, 'OLDCODE1')
    await redis.sadd(keys.staging, 'NEWCODE1', 'NEWCODE2')
    // WATCH first, as the real swap does: it must reach the same node as the MULTI.
    await redis.watch(keys.meta, keys.valid, keys.staging)
    const replies = await swapMulti(redis, keys, runId).exec()
    t.not(replies, null, 'EXEC ran (the WATCH saw no change)')
    t.same(replies?.filter(([err]) => err !== null), [], 'no command of the MULTI failed')
    t.same((await redis.smembers(keys.valid)).sort(), ['NEWCODE1', 'NEWCODE2'], 'the staging set is live')
    t.same(await redis.smembers(keys.retired), ['OLDCODE1'], 'the old set is aside')
    t.equal(await redis.hget(keys.meta, META.generation), runId, 'meta names the run')
    t.equal(await redis.hget(keys.runResult, RUN_RESULT.state), 'applied', 'the run result is written')

    await redis.sadd(old.valid, 'OLDCODE1')
    await redis.sadd(old.staging, 'NEWCODE1')
    // A node checks a RENAME's two keys when it is queued, whichever node owns them: CROSSSLOT.
    const node = await ownerOf(redis, old.valid)
    t.teardown(() => node.disconnect())
    const refused = await swapMulti(node, old, runId).exec().then(() => null, (err: Error & { previousErrors?: Error[] }) => err)
    t.match(refused?.message, /EXECABORT/, 'the old-name MULTI is discarded')
    t.match(refused?.previousErrors?.map((err) => err.message).join('\n'), /CROSSSLOT/, 'because its keys are in different slots')
    t.equal(await redis.exists(old.staging), 1, 'and nothing moved')
  })

  t.test('a Lua script over the set, meta, staging, retired and result keys runs on the cluster', async (t) => {
    const config = testConfig('cluster-eval', clusterEnv)
    const redis = createRedis(config, 'worker', silentLogger)
    t.teardown(async () => { await deleteRedisPrefix(redis, config.redisPrefix); redis.disconnect() })
    const runId = 'run-3'
    const all = redisKeys(config.redisPrefix)
    const keys = [all.valid, all.meta, all.staging(runId), all.retired(runId), all.runResult(runId)]
    await redis.sadd(all.valid, 'OLDCODE1')
    await redis.sadd(all.staging(runId), 'NEWCODE1', 'NEWCODE2', 'NEWCODE3')
    const live = await redis.eval(SWAP_SCRIPT, keys.length, ...keys, runId, META.generation, RUN_RESULT.state)
    t.equal(live, 3, 'the script swapped the staging set in')
    t.equal(await redis.hget(all.meta, META.generation), runId, 'meta names the run')
    t.equal(await redis.hget(all.runResult(runId), RUN_RESULT.state), 'applied', 'the run result is written')
    t.same(await redis.smembers(all.retired(runId)), ['OLDCODE1'], 'the old set is aside')

    const old = Object.values(untaggedKeys(config.redisPrefix, runId))
    await t.rejects(redis.eval(SWAP_SCRIPT, old.length, ...old, runId, META.generation, RUN_RESULT.state), /CROSSSLOT/,
      'the same script over the old names is refused')
  })

  t.test('BullMQ adds, processes and flows jobs under the tagged prefix', async (t) => {
    const config = testConfig('cluster-bull', clusterEnv)
    const { bullPrefix: prefix } = redisKeys(config.redisPrefix)
    const producer = createRedis(config, 'producer', silentLogger)
    const connection = createRedis(config, 'worker', silentLogger)
    const queue = new Queue('cluster-jobs', { connection: producer, prefix })
    const flows = new FlowProducer({ connection: producer, prefix })
    const worker = new Worker('cluster-jobs', async (job) => `done ${String(job.data.n)}`, { connection, prefix })
    worker.on('error', () => {})
    t.teardown(async () => {
      await worker.close()
      await queue.close()
      await flows.close()
      await deleteRedisPrefix(producer, config.redisPrefix)
      producer.disconnect()
      connection.disconnect()
    })
    const completed = once(worker, 'completed')
    const job = await queue.add('one', { n: 7 })
    const [done] = await completed as [{ id?: string, returnvalue: unknown }]
    t.equal(done.id, job.id, 'the worker took the job')
    t.equal(done.returnvalue, 'done 7', 'and processed it')
    t.equal(await slotOf(producer, `${prefix}:cluster-jobs:${job.id ?? ''}`), await slotOf(producer, `${prefix}:cluster-jobs:wait`), 'every key of the queue is in one slot')

    // A flow writes a parent and its child of two queues in one script, as the ingest runs do.
    const flow = await flows.add({ name: 'run', queueName: 'cluster-runs', data: {}, children: [{ name: 'file', queueName: 'cluster-files', data: {} }] })
    t.equal(await flow.job.getState(), 'waiting-children', 'the flow was added across two queues')

    const untagged = new Queue('cluster-jobs', { connection: producer, prefix: `${config.redisPrefix}bull` })
    t.teardown(async () => await untagged.close())
    await t.rejects(untagged.add('one', { n: 1 }), /CROSSSLOT/, 'without the tag BullMQ cannot add a job on a cluster')
  })
  t.test('the aggregator publishes a run on the cluster through its real swap, and the api answers from it', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'cluster-aggregator-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    const key = await generateCoupons({ outDir: dir, scale: 0.001, seed: 41 })
    const config = testConfig('cluster-agg', { ...clusterEnv, COUPON_DATA_DIR: dir })
    const kafka = testKafka(config)
    const redis = createRedis(config, 'worker', silentLogger)
    t.teardown(async () => {
      await deleteTopics(kafka, config.kafkaTopicPrefix)
      await deleteRedisPrefix(redis, config.redisPrefix)
      redis.disconnect()
    })
    t.ok(redis instanceof Cluster, 'the aggregator\'s kind of client is a cluster client')
    const aggregator = new Aggregator({ config, logger: silentLogger })
    t.teardown(() => aggregator.close())
    await aggregator.start()

    const runId = newRunId()
    await publishRunRecord(kafka, config, { type: 'run', runId, files: config.couponFiles, requestedAt: new Date().toISOString(), source: 'cli' })
    for (const file of config.couponFiles) await produceFile({ config, kafka, logger: silentLogger, file, runId })
    const keys = redisKeys(config.redisPrefix)
    const state = await waitFor(`run ${runId} to be applied on the cluster`, async () => await redis.hget(keys.runResult(runId), RUN_RESULT.state), 60_000)
    t.equal(state, 'applied')
    t.same((await redis.smembers(keys.valid)).sort(), key.valid, 'the live set on the cluster is exactly the answer key')
    t.equal(await redis.hget(keys.meta, META.generation), runId)

    const { app } = await testApp(t, { ...clusterEnv, REDIS_PREFIX: config.redisPrefix, KAFKA_TOPIC_PREFIX: config.kafkaTopicPrefix })
    t.equal((await app.inject({ method: 'GET', url: `/coupons/${key.valid[0]}` })).statusCode, 200, 'the api finds a valid code')
    const invalid = Object.keys(key.planted).find((code) => key.planted[code].length === 1) as string
    t.equal((await app.inject({ method: 'GET', url: `/coupons/${invalid}` })).statusCode, 404, 'and not a code of one file only')
  })
})
