// Runs through BullMQ against the real Redis and Kafka: flows of file jobs processed in sandboxed
// child processes, progress, retries that stop for bad input, the per-file lock, and what a sandboxed
// child may see of the host's environment.
import { readFile, writeFile } from 'node:fs/promises'
import { gzipSync } from 'node:zlib'
import { join } from 'node:path'
import { Queue, QueueEvents } from 'bullmq'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { acquireFileLock } from '../../src/ingest/file-lock.js'
import { produceFile } from '../../src/ingest/produce-file.js'
import { FILE_JOB, FILES_QUEUE, fileJobOptions, SANDBOX_CONFIG_ENV, type FileJobData, type FileJobResult } from '../../src/queues/ingest-jobs.js'
import { createIngestWorker, SANDBOX_INHERITED_ENV, sandboxEnv, sandboxExecArgv } from '../../src/queues/ingest-worker.js'
import type { IngestRuns } from '../../src/queues/ingest-runs.js'
import type { Config } from '../../src/shared/config.js'
import { topicNames } from '../../src/shared/kafka.js'
import { NODE_FLAGS } from '../../src/shared/node-flags.js'
import { META, redisKeys } from '../../src/shared/redis-keys.js'
import { newRunId } from '../../src/shared/segments.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import type { IngestAttempt, Run } from '../../src/shared/run-contract.js'
import { readSegments, readTopic } from '../helpers/ingest-read.js'
import { processTable } from '../helpers/process-tree.js'
import { queueStack } from '../helpers/queues-env.js'
import { silentLogger, testConfig } from '../helpers/test-env.js'

async function waitForRun (runs: IngestRuns, runId: string, done: (run: Run) => boolean, seen: Run[] = []): Promise<Run> {
  const deadline = Date.now() + 120_000
  for (;;) {
    const run = await runs.getRun(runId)
    if (run !== null) {
      seen.push(run)
      if (done(run)) return run
    }
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish: ${JSON.stringify(run)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function queueEvents (t: Test, config: Config, redis: Redis): QueueEvents {
  const connection = redis.duplicate()
  const events = new QueueEvents(FILES_QUEUE, { connection, prefix: redisKeys(config.redisPrefix).bullPrefix })
  t.teardown(async () => { await events.close(); connection.disconnect() })
  return events
}

t.test('a run of three files completes when its three file jobs do, with progress while they run', async (t) => {
  const { dir, config, kafka, redis, runs } = await queueStack(t, 'run3')
  // Large enough that each file takes a few progress intervals (250 ms) even with the packed,
  // 4 MiB-request ingest: at scale 0.01 a file was once done before its first report in CI.
  await generateCoupons({ outDir: dir, scale: 0.04, seed: 3 })
  const events = queueEvents(t, config, redis)
  await events.waitUntilReady()
  const progressEvents: Array<{ jobId: string, percent: number }> = []
  events.on('progress', ({ jobId, data }) => { progressEvents.push({ jobId, percent: (data as { percent: number }).percent }) })

  const started = await runs.startRun(config.couponFiles, 'admin')
  t.equal(started.jobs.length, 3)
  t.same(started.jobs.map((job) => job.file), config.couponFiles)
  const seen: Run[] = []
  const run = await waitForRun(runs, started.runId, (view) => view.state === 'completed' || view.state === 'failed', seen)

  t.equal(run.state, 'completed')
  t.equal(run.source, 'admin')
  t.ok(run.finishedAt !== null)
  t.ok(seen.some((view) => view.state !== 'completed'), 'the run was seen unfinished')
  t.ok(seen.some((view) => view.files.some((file) => file.state === 'active' && file.progress !== null && file.progress.percent > 0 && file.progress.percent < 100)), 'a running file showed progress between 0% and 100% in the run view')
  for (const job of started.jobs) {
    // The report at 0% when the file opens does not count: progress must move while it streams.
    t.ok(progressEvents.some((event) => event.jobId === job.id && event.percent > 0 && event.percent < 100), `${job.file} reported progress between 0% and 100%`)
  }
  const records = await readSegments(kafka, topicNames(config).segments)
  t.same(records.filter((r) => r.type === 'run').map((r) => r.runId), [started.runId], 'one run record')
  for (const file of run.files) {
    t.equal(file.state, 'completed', file.file)
    t.equal(file.progress?.percent, 100, `${file.file} ends at 100%`)
    t.equal(file.attemptsMade, 1)
    const manifest = records.find((r) => r.type === 'segment' && r.file === file.file)
    t.ok(manifest !== undefined && manifest.type === 'segment' && manifest.segmentId === file.segmentId && manifest.runId === started.runId,
      `${file.file} has a manifest for the job's segment`)
  }
  t.same((await runs.listRuns()).map((view) => view.runId), [started.runId])
  t.equal((await runs.counts()).completed, 3)
})

t.test('a truncated file fails its job once, fails the run and leaves no manifest', async (t) => {
  const { dir, config, kafka, runs } = await queueStack(t, 'trunc', { INGEST_ATTEMPTS: '5' })
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 4 })
  const path = join(dir, 'couponbase3.gz')
  const whole = await readFile(path)
  await writeFile(path, whole.subarray(0, Math.floor(whole.length * 0.9)))

  const started = await runs.startRun(['couponbase3.gz'], 'admin')
  const run = await waitForRun(runs, started.runId, (view) => view.state === 'failed' || view.state === 'completed')
  t.equal(run.state, 'failed', 'the run failed')
  const [file] = run.files
  t.equal(file.state, 'failed')
  t.equal(file.attemptsMade, 1, 'not retried')
  t.match(file.failedReason, /^INGEST_TRUNCATED_GZIP: couponbase3\.gz: truncated gzip/)
  t.match(file.segmentId, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/, 'the failed attempt names its segment (a run-style id)')
  const records = await readSegments(kafka, topicNames(config).segments)
  t.same(records.filter((r) => r.type === 'segment'), [], 'no manifest')
})

t.test('a queued partial run that a KAFKA_PARTITIONS change overtook fails at once, unretried; a full run is produced', async (t) => {
  const { dir, config, kafka, redis, runs } = await queueStack(t, 'repartition', { INGEST_ATTEMPTS: '3' })
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 11 })
  // As if the live set had been built with 8 partitions and the run queued before KAFKA_PARTITIONS became 4.
  await redis.hset(redisKeys(config.redisPrefix).meta, META.partitions, '8')

  const partial = await runs.startRun(['couponbase2.gz'], 'admin')
  const refused = await waitForRun(runs, partial.runId, (view) => view.state === 'failed' || view.state === 'completed')
  t.equal(refused.state, 'failed')
  const [file] = refused.files
  t.equal(file.attemptsMade, 1, 'not retried: only a full run or the old KAFKA_PARTITIONS helps')
  t.equal(file.failedReason, 'INGEST_PARTITIONS_CHANGED: KAFKA_PARTITIONS is 4 but the live set was built from segments with 8 partitions; ' +
    'run a full ingest (all files: couponbase1.gz, couponbase2.gz, couponbase3.gz) to re-partition, not only couponbase2.gz')
  t.same(await readTopic(kafka, topicNames(config).data('couponbase2.gz')).catch(() => []), [], 'nothing produced')

  const full = await runs.startRun(config.couponFiles, 'admin')
  const produced = await waitForRun(runs, full.runId, (view) => view.state === 'failed' || view.state === 'completed')
  t.equal(produced.state, 'completed', 'a run of every file re-partitions them all')
  const manifests = (await readSegments(kafka, topicNames(config).segments)).filter((r) => r.type === 'segment')
  t.same(manifests.map((m) => m.type === 'segment' && m.partitions.length), [4, 4, 4], 'each file under the new count')
})

t.test('a job waits while another run holds its file, then produces it', async (t) => {
  const { dir, config, redis, runs } = await queueStack(t, 'lock')
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 5 })
  const lock = await acquireFileLock(redis, redisKeys(config.redisPrefix).ingestLock('couponbase1.gz'))
  const started = await runs.startRun(['couponbase1.gz'], 'admin')
  const connection = redis.duplicate()
  const queue = new Queue(FILES_QUEUE, { connection, prefix: redisKeys(config.redisPrefix).bullPrefix })
  t.teardown(async () => { await queue.close(); connection.disconnect() })
  const jobId = started.jobs[0].id
  const deadline = Date.now() + 60_000
  while ((await queue.getJobLogs(jobId)).logs.length === 0) {
    if (Date.now() > deadline) throw new Error('the job never waited')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const waiting = await runs.getRun(started.runId)
  t.equal(waiting?.files[0].state, 'active', 'the job is active')
  t.equal(waiting?.files[0].progress, null, 'and has produced nothing')
  t.match((await queue.getJobLogs(jobId)).logs[0], /waiting for another production of couponbase1.gz/)
  await lock.release()
  const run = await waitForRun(runs, started.runId, (view) => view.state === 'completed' || view.state === 'failed')
  t.equal(run.state, 'completed', 'then it completes')
})

t.test('an attempt that lost its file lock writes no manifest, and its retry completes the job without the stale failure reason', async (t) => {
  const { dir, config, kafka, redis, runs } = await queueStack(t, 'fence', { INGEST_ATTEMPTS: '2' })
  await generateCoupons({ outDir: dir, scale: 0.01, seed: 6 })
  const started = await runs.startRun(['couponbase1.gz'], 'admin')
  // Once the first attempt reports progress it holds the lock; take it away, as an expiry would.
  await waitForRun(runs, started.runId, (view) => view.files[0].progress !== null)
  await redis.del(redisKeys(config.redisPrefix).ingestLock('couponbase1.gz'))
  const run = await waitForRun(runs, started.runId, (view) => view.state === 'completed' || view.state === 'failed')

  t.equal(run.state, 'completed')
  const [file] = run.files
  t.equal(file.state, 'completed')
  t.equal(file.failedReason, null, 'no failure reason beside completed')
  t.same(file.attempts.map((attempt) => attempt.outcome), ['failed', 'produced'], 'both attempts are listed')
  t.match(file.attempts[0].error, /^INGEST_LOCK_LOST: /, 'the first with its error')
  t.equal(file.attempts[1].error, null)
  t.equal(file.attempts[1].segmentId, file.segmentId, 'the second produced the job\'s segment')
  t.ok(file.attempts.every((attempt) => attempt.finishedAt !== null && attempt.finishedAt >= attempt.startedAt), 'each has its start and end')
  const manifests = (await readSegments(kafka, topicNames(config).segments)).filter((r) => r.type === 'segment')
  t.same(manifests.map((m) => m.type === 'segment' && m.segmentId), [file.segmentId], 'one manifest: the retry\'s')
})

t.test('a worker that closes mid-file gives its job back: the attempt is listed as interrupted and nothing is published', async (t) => {
  const { dir, config, kafka, runs } = await queueStack(t, 'close', {}, { worker: false })
  // Large enough that the close lands mid-file: since records are packed and requests are 4 MiB,
  // a scale-0.01 file could finish between the first progress report and the close.
  await generateCoupons({ outDir: dir, scale: 0.05, seed: 8 })
  const worker = createIngestWorker({ config, logger: silentLogger })
  t.teardown(() => worker.close())
  const started = await runs.startRun(['couponbase1.gz'], 'admin')
  await waitForRun(runs, started.runId, (view) => (view.files[0].progress?.percent ?? 0) > 0)
  await worker.close()

  const [file] = (await runs.getRun(started.runId))!.files
  t.equal(file.state, 'waiting', 'the job is back in the queue')
  t.equal(file.failedReason, null)
  t.same(file.attempts.map((attempt) => attempt.outcome), ['interrupted'])
  t.match(file.attempts[0].error, /^INGEST_ABORTED: the worker closed/)
  t.same((await readSegments(kafka, topicNames(config).segments)).filter((r) => r.type === 'segment'), [], 'no manifest')
})

t.test('a job whose run already has a manifest of its file adopts it instead of producing the file again', async (t) => {
  const { dir, config, kafka, redis } = await queueStack(t, 'adopt')
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 7 })
  // As if an attempt had written the manifest and its worker had died before the job completed.
  const runId = newRunId()
  const earlier = await produceFile({ config, kafka, logger: silentLogger, file: 'couponbase2.gz', runId })
  const connection = redis.duplicate()
  const queue = new Queue<FileJobData, FileJobResult>(FILES_QUEUE, { connection, prefix: redisKeys(config.redisPrefix).bullPrefix })
  t.teardown(async () => { await queue.close(); connection.disconnect() })
  const lookupStarted = Date.now()
  const died: IngestAttempt = { attempt: 1, segmentId: earlier.segmentId, startedAt: new Date().toISOString(), finishedAt: null, outcome: 'running', error: null }
  const job = await queue.add(FILE_JOB, { runId, file: 'couponbase2.gz', attempts: [died] }, fileJobOptions(config, runId, 'couponbase2.gz'))
  const done = await waitFor('the job to finish', async () => {
    const state = await queue.getJobState(job.id!)
    return state === 'completed' || state === 'failed' ? await queue.getJob(job.id!) : undefined
  }, 60_000, 50)
  t.comment(`the job took ${Date.now() - lookupStarted} ms, most of it the lookup`)

  t.equal(done?.returnvalue?.segmentId, earlier.segmentId, 'the job\'s result is the earlier manifest')
  t.same(done?.data.attempts?.map((attempt) => [attempt.outcome, attempt.segmentId]), [['interrupted', earlier.segmentId], ['adopted', earlier.segmentId]], 'the dead attempt is listed as interrupted and the retry says it adopted its manifest')
  t.same(done?.progress, { percent: 100, bytesRead: earlier.fileBytes, bytesTotal: earlier.fileBytes, lines: earlier.lines, codes: earlier.codes })
  const manifests = (await readSegments(kafka, topicNames(config).segments)).filter((r) => r.type === 'segment')
  t.equal(manifests.length, 1, 'no second manifest')
  const segments = new Set((await readTopic(kafka, topicNames(config).data('couponbase2.gz'))).map((record) => record.headers.segment))
  t.same([...segments], [earlier.segmentId], 'and not one record of a second production')
})

/** The environments and command lines of this process's child processes, read from /proc (Linux). */
async function childProcesses (): Promise<Array<{ env: Record<string, string>, argv: string[] }>> {
  const children: Array<{ env: Record<string, string>, argv: string[] }> = []
  for (const { pid } of (await processTable()).filter((entry) => entry.ppid === process.pid)) {
    try {
      const raw = await readFile(`/proc/${pid}/environ`, 'utf8')
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean)
      children.push({ env: Object.fromEntries(raw.split('\0').filter(Boolean).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)])), argv })
    } catch {
      // the process ended while we looked
    }
  }
  return children
}

t.test('a sandboxed child sees neither ADMIN_TOKEN nor the host\'s other variables, and runs with the Node flags of every coupons process', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const token = 'sandbox-test-admin-token-0123456789'
  const saved = { ADMIN_TOKEN: process.env.ADMIN_TOKEN, SOME_OTHER_SECRET: process.env.SOME_OTHER_SECRET }
  process.env.ADMIN_TOKEN = token
  process.env.SOME_OTHER_SECRET = 'not-for-children'
  t.teardown(() => { Object.assign(process.env, saved); for (const [name, value] of Object.entries(saved)) if (value === undefined) delete process.env[name] })

  const { dir, config, runs } = await queueStack(t, 'secret', { ADMIN_TOKEN: token })
  t.equal(config.adminToken, token, 'the host has the token')
  await writeFile(join(dir, 'couponbase1.gz'), gzipSync('HAPPYHRS\n'))
  const started = await runs.startRun(['couponbase1.gz'], 'admin')
  const run = await waitForRun(runs, started.runId, (view) => view.state === 'completed' || view.state === 'failed')
  t.equal(run.state, 'completed', 'the job ran in a sandboxed child')

  // BullMQ keeps the idle child for the next job, so its environment can be read now.
  const children = (await childProcesses()).filter(({ env }) => SANDBOX_CONFIG_ENV in env)
  t.equal(children.length, 1, 'found the one sandboxed child')
  for (const { env, argv } of children) {
    t.ok(NODE_FLAGS.every((flag) => argv.includes(flag)), `started with ${NODE_FLAGS.join(' ')}: ${argv.join(' ')}`)
    // Besides what sandboxEnv passes, fork() adds its IPC channel and tap adds its process tracking.
    const unexpected = Object.keys(env).filter((name) => name !== SANDBOX_CONFIG_ENV && !(SANDBOX_INHERITED_ENV as readonly string[]).includes(name) &&
      !name.startsWith('NODE_CHANNEL_') && !name.startsWith('_TAPJS_'))
    t.same(unexpected, [], 'only the allowed variables')
    t.notOk('ADMIN_TOKEN' in env, 'no ADMIN_TOKEN')
    t.notOk('SOME_OTHER_SECRET' in env, 'no other variable of the host')
    t.notMatch(JSON.stringify(env), token, 'the token is nowhere in it, not even in the config')
    t.equal(JSON.parse(env[SANDBOX_CONFIG_ENV]).redisPrefix, config.redisPrefix, 'the config is there')
  }
})

t.test('sandboxExecArgv keeps the host\'s Node arguments (tsx\'s loader) and adds NODE_FLAGS once, without --inspect', async (t) => {
  t.same(sandboxExecArgv(['--import', 'tsx', '--inspect=9229', ...NODE_FLAGS]), ['--import', 'tsx', ...NODE_FLAGS])
  t.same(sandboxExecArgv([]), [...NODE_FLAGS])
})

t.test('sandboxEnv passes the config without the admin and metrics tokens or the database URL, and only the allowed variables', async (t) => {
  const config = testConfig('sandboxenv', { ADMIN_TOKEN: 'sandbox-test-admin-token-0123456789', METRICS_TOKEN: 'sandbox-test-metrics-token-0123456789', DATABASE_URL: 'postgres://coupons:s3cret@db:5432/coupons' })
  const env = sandboxEnv(config, { PATH: '/usr/bin', ADMIN_TOKEN: 'sandbox-test-admin-token-0123456789', AWS_SECRET_ACCESS_KEY: 'x', TZ: 'UTC' })
  t.same(Object.keys(env).sort(), [SANDBOX_CONFIG_ENV, 'PATH', 'TZ'].sort())
  const passed = JSON.parse(env[SANDBOX_CONFIG_ENV]!)
  t.notOk('adminToken' in passed, 'no adminToken in the config')
  t.notOk('metricsToken' in passed, 'no metricsToken in the config')
  t.notOk('databaseUrl' in passed, 'no databaseUrl in the config')
  t.same(passed, JSON.parse(JSON.stringify({ ...config, adminToken: undefined, metricsToken: undefined, databaseUrl: undefined })), 'everything else of the config')
})
