// IngestRuns against the real Redis and Kafka: the daily scheduler exists once however often the
// process starts, goes away with INGEST_CRON=off, and its jobs start real runs.
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import t from 'tap'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { RUNS_QUEUE } from '../../src/queues/ingest-jobs.js'
import { IngestRuns } from '../../src/queues/ingest-runs.js'
import type { ErrorCode } from '../../src/shared/errors.js'
import { topicNames } from '../../src/shared/kafka.js'
import { redisKeys, RUN_RESULT } from '../../src/shared/redis-keys.js'
import { deleteRedisPrefix, deleteTopics, silentLogger, testConfig, testKafka } from '../helpers/test-env.js'
import { readSegments } from '../helpers/ingest-read.js'
import { queueStack } from '../helpers/queues-env.js'

const logger = silentLogger

t.test('the daily scheduler is created once however many times the process starts', async (t) => {
  const base = testConfig('sched', { INGEST_CRON: '0 3 * * *', INGEST_TZ: 'Europe/Paris' })
  const redis = new Redis(base.redisUrl, { maxRetriesPerRequest: null })
  const queue = new Queue(RUNS_QUEUE, { connection: redis, prefix: redisKeys(base.redisPrefix).bullPrefix })
  t.teardown(async () => { await queue.close(); await deleteRedisPrefix(redis, base.redisPrefix); redis.disconnect() })

  for (let start = 0; start < 3; start++) {
    const runs = new IngestRuns({ config: base, logger })
    await runs.init()
    await runs.close()
  }
  t.equal(await queue.getJobSchedulersCount(), 1, 'one scheduler')
  t.equal((await queue.getJobCounts('delayed')).delayed, 1, 'one pending daily job')

  const runs = new IngestRuns({ config: base, logger })
  t.teardown(() => runs.close())
  const schedule = await runs.schedule()
  t.equal(schedule.pattern, '0 3 * * *')
  t.equal(schedule.tz, 'Europe/Paris')
  t.ok(schedule.next !== null && Date.parse(schedule.next) > Date.now(), 'the next run is in the future')
  t.equal(new Date(schedule.next!).toLocaleString('en-GB', { timeZone: 'Europe/Paris', hour: '2-digit', minute: '2-digit' }), '03:00', 'at 03:00 Paris time')

  const changed = new IngestRuns({ config: { ...base, ingestCron: '30 4 * * *' }, logger })
  await changed.init()
  await changed.close()
  t.equal(await queue.getJobSchedulersCount(), 1, 'a new pattern replaces the old one')
  t.equal((await runs.schedule()).pattern, '30 4 * * *')

  const off = new IngestRuns({ config: { ...base, ingestCron: null }, logger })
  await off.init()
  await off.close()
  t.equal(await queue.getJobSchedulersCount(), 0, 'INGEST_CRON=off removes it')
  t.same(await runs.schedule(), { pattern: null, tz: 'Europe/Paris', next: null })
})

t.test('a scheduled job starts a real run of every configured file', async (t) => {
  // Every second, so the test does not wait for 03:00; removed as soon as one run started.
  const { dir, config, kafka, redis, runs } = await queueStack(t, 'schedrun', { INGEST_CRON: '* * * * * *' })
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 9 })

  await runs.init()
  const deadline = Date.now() + 60_000
  let listed = await runs.listRuns()
  while (listed.length === 0) {
    if (Date.now() > deadline) throw new Error('no scheduled run started')
    await new Promise((resolve) => setTimeout(resolve, 200))
    listed = await runs.listRuns()
  }
  const off = new IngestRuns({ config: { ...config, ingestCron: null }, logger })
  await off.init()
  await off.close()

  const runId = listed.at(-1)!.runId
  let run = await runs.getRun(runId)
  while (run?.state !== 'completed' && run?.state !== 'failed') {
    if (Date.now() > deadline + 60_000) throw new Error(`run ${runId} did not finish`)
    await new Promise((resolve) => setTimeout(resolve, 200))
    run = await runs.getRun(runId)
  }
  t.equal(run.state, 'completed')
  t.equal(run.source, 'schedule')
  t.same(run.files.map((file) => file.file), config.couponFiles)
  t.equal(run.result, null, 'no aggregator result yet')
  const records = await readSegments(kafka, topicNames(config).segments)
  t.ok(records.some((r) => r.type === 'run' && r.runId === runId && r.source === 'schedule'), 'its run record is on the segments topic')
  t.equal(records.filter((r) => r.type === 'segment' && r.runId === runId).length, 3, 'with a manifest per file')

  // The aggregator's verdict shows up in the run view.
  const segments = run.files.map(({ file, segmentId }) => ({ file, segmentId: segmentId!, runId }))
  await redis.hset(redisKeys(config.redisPrefix).runResult(runId), RUN_RESULT.state, 'applied', RUN_RESULT.appliedAt, '2030-01-01T00:00:00.000Z', RUN_RESULT.validCount, '8', RUN_RESULT.swapMs, '12',
    RUN_RESULT.segments, JSON.stringify(segments), RUN_RESULT.deciders, JSON.stringify({ 'host-1-ab12': [0, 2], 'host-2-cd34': [1, 3] }))
  const applied = await runs.getRun(runId)
  t.same(applied?.result, { state: 'applied', appliedAt: '2030-01-01T00:00:00.000Z', validCount: 8, swapMs: 12, error: null, segments, deciders: { 'host-1-ab12': [0, 2], 'host-2-cd34': [1, 3] }, attempts: null },
    'the result names the aggregator instance that decided each partition')
  t.same(applied?.files.map((file) => file.appliedSegmentId), segments.map((segment) => segment.segmentId), 'each file names its applied segment')
  t.equal(await runs.getRun('no-such-run'), null)
})

t.test('a run of files that are not configured is refused before anything is written', async (t) => {
  const config = testConfig('unknown')
  const kafka = testKafka(config)
  const runs = new IngestRuns({ config, logger })
  const redis = new Redis(config.redisUrl)
  t.teardown(async () => {
    await runs.close()
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    // BullMQ writes its queues' meta keys as soon as they are created.
    await deleteRedisPrefix(redis, config.redisPrefix)
    redis.disconnect()
  })
  await t.rejects(runs.startRun(['../secret.gz'], 'admin'), { code: 'INGEST_UNKNOWN_FILE' satisfies ErrorCode })
  await t.rejects(runs.startRun([], 'admin'), { code: 'INGEST_NO_FILES' satisfies ErrorCode })
  t.same(await readSegments(kafka, topicNames(config).segments), [])
})
