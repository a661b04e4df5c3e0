// The aggregator against the real Kafka and Redis, fed by the real ingest (produceFile).
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { generateCoupons, type AnswerKey } from '../../src/gen/generate-coupons.js'
import { topicNames } from '../../src/shared/kafka.js'
import { META, PLAN, RUN_RESULT } from '../../src/shared/redis-keys.js'
import { newRunId, type PartitionRange } from '../../src/shared/segments.js'
import { publishRunRecord } from '../../src/ingest/run-record.js'
import { produceFile } from '../../src/ingest/produce-file.js'
import { Aggregator } from '../../src/aggregator/aggregator.js'
import { ingestRun, liveSet, runResult, setupPipeline, startAggregator, waitFor, type Pipeline } from '../helpers/aggregator-fixtures.js'
import { onRunPhase } from '../helpers/run-phases.js'
import { silentLogger } from '../helpers/test-env.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']

/** Rewrites a gz file without the lines equal to `drop`, with `add` appended. */
async function editFile (path: string, drop: string, add: string): Promise<void> {
  const lines = gunzipSync(await readFile(path)).toString('latin1').split('\n').filter((line) => line !== '' && line !== drop)
  lines.push(add)
  await writeFile(path, gzipSync(Buffer.from(lines.join('\n') + '\n', 'latin1')))
}

/** Writes a small file of the given codes into the pipeline's data folder. */
async function writeCodes (pipeline: Pipeline, file: string, codes: string[]): Promise<void> {
  await writeFile(join(pipeline.dir, file), gzipSync(Buffer.from(codes.join('\n') + '\n')))
}

/** Three small files whose valid set is SHARED01 and SHARED02, ingested and applied as a first run. */
async function applySmallBaseline (t: Test, pipeline: Pipeline): Promise<{ runId: string }> {
  await writeCodes(pipeline, FILES[0], ['SHARED01', 'SHARED02', 'ONLYONE1'])
  await writeCodes(pipeline, FILES[1], ['SHARED01', 'SHARED02', 'ONLYTWO1'])
  await writeCodes(pipeline, FILES[2], ['SHARED02', 'ONLYTHRE'])
  await startAggregator(t, pipeline.config)
  const first = await ingestRun(pipeline, FILES)
  t.equal((await runResult(pipeline, first.runId)).state, 'applied')
  return first
}

t.test('a run of three generated files publishes exactly the answer key, with its meta', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-run')
  const key: AnswerKey = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 11 })
  const started = Date.now()
  await startAggregator(t, pipeline.config)
  const { runId, manifests } = await ingestRun(pipeline, FILES)

  const result = await runResult(pipeline, runId)
  t.equal(result[RUN_RESULT.state], 'applied', JSON.stringify(result))
  t.same(await liveSet(pipeline), key.valid)
  const meta = await pipeline.redis.hgetall(pipeline.keys.meta)
  t.equal(meta[META.generation], runId)
  t.equal(meta[META.validCount], String(key.valid.length))
  t.equal(result[RUN_RESULT.validCount], String(key.valid.length))
  t.equal(meta[META.lastSwapAt], result[RUN_RESULT.appliedAt], 'lastSwapAt is when the run was applied')
  t.ok(Date.parse(meta[META.lastSwapAt]) >= started && Date.parse(meta[META.lastSwapAt]) <= Date.now(), `lastSwapAt ${meta[META.lastSwapAt]} is during the test`)
  t.equal(meta[META.swapMs], result[RUN_RESULT.swapMs], 'swapMs is the run\'s')
  t.same(JSON.parse(meta[META.segments]), manifests.map(({ file, segmentId }) => ({ file, segmentId, runId })))
})

t.test('re-ingesting one file changes exactly its codes and frees the old segment\'s records', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-reingest')
  const key: AnswerKey = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 12 })
  await startAggregator(t, pipeline.config)
  const first = await ingestRun(pipeline, FILES)
  t.equal((await runResult(pipeline, first.runId)).state, 'applied')
  t.same(await liveSet(pipeline), key.valid)

  // A code valid through files 1 and 2 only leaves file 2; a code of file 1 only joins file 2.
  const dropped = Object.entries(key.planted).find(([, files]) => files.join() === [FILES[0], FILES[1]].join())
  const added = Object.entries(key.planted).find(([, files]) => files.join() === FILES[0])
  t.ok(dropped !== undefined && added !== undefined, 'the answer key has a code in files 1 and 2 only and one in file 1 only')
  if (dropped === undefined || added === undefined) return
  await editFile(join(pipeline.dir, FILES[1]), dropped[0], added[0])
  const second = await ingestRun(pipeline, [FILES[1]])
  t.equal((await runResult(pipeline, second.runId)).state, 'applied')

  const expected = key.valid.filter((code) => code !== dropped[0]).concat(added[0]).sort()
  t.same(await liveSet(pipeline), expected)
  const meta = await pipeline.redis.hgetall(pipeline.keys.meta)
  t.equal(meta[META.generation], second.runId)
  const segments = JSON.parse(meta[META.segments]) as Array<{ file: string, runId: string }>
  t.same(segments.map((s) => s.runId), [first.runId, second.runId, first.runId], 'files 1 and 3 keep their segments')

  const admin = pipeline.kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  // Old records are deleted just after the swap that wrote the run's result: wait for it.
  const topic = topicNames(pipeline.config).data(FILES[1])
  const startsAtSegment = async (): Promise<boolean> => {
    const offsets = await admin.fetchTopicOffsets(topic)
    return second.manifests[0].partitions.every((range) => range.firstOffset === null || offsets.find((o) => o.partition === range.partition)?.low === range.firstOffset)
  }
  await waitFor(`${topic} to start at the current segment`, startsAtSegment)
  const offsets = await admin.fetchTopicOffsets(topic)
  for (const range of second.manifests[0].partitions) {
    if (range.firstOffset === null) continue
    const low = offsets.find((o) => o.partition === range.partition)?.low
    t.equal(low, range.firstOffset, `partition ${range.partition} of ${FILES[1]} starts at the current segment`)
  }
})

t.test('a manifest whose counts do not match its records fails the run and swaps nothing', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-mismatch')
  const first = await applySmallBaseline(t, pipeline)
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'])

  // A new file 3 that would make ONLYONE1 valid, produced before its run record is published so
  // that the run is decided only after a manifest claiming one more code than the records hold.
  await writeCodes(pipeline, FILES[2], ['ONLYONE1', 'ONLYTHRE'])
  // The records come from a production for a run that never gets a run record: the lying copy of
  // its manifest must be the run's first (a later manifest of a run and file is ignored).
  const runId = newRunId()
  const manifest = await produceFile({ config: pipeline.config, kafka: pipeline.kafka, logger: silentLogger, file: FILES[2], runId: newRunId() })
  const range = manifest.partitions.find((r) => r.codes > 0) as PartitionRange
  const lying = { ...manifest, runId, partitions: manifest.partitions.map((r) => r === range ? { ...r, codes: r.codes + 1 } : r) }
  await publishRunRecord(pipeline.kafka, pipeline.config, lying)
  await publishRunRecord(pipeline.kafka, pipeline.config, { type: 'run', runId, files: [FILES[2]], requestedAt: new Date().toISOString(), source: 'cli' })

  const result = await runResult(pipeline, runId)
  t.equal(result[RUN_RESULT.state], 'failed')
  t.match(result[RUN_RESULT.error], /^AGGREGATOR_COUNT_MISMATCH: couponbase3\.gz: .*partition \d+ should hold \d+ codes/)
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'], 'the live set is unchanged')
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.generation), first.runId)
  t.same(await pipeline.redis.keys(pipeline.keys.staging('*')), [], 'no staging set is left behind')
})

t.test('MIN_FILES=3 publishes only the codes in all three files', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-min3', { MIN_FILES: '3' })
  const key: AnswerKey = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 13 })
  await startAggregator(t, pipeline.config)
  const { runId } = await ingestRun(pipeline, FILES)
  t.equal((await runResult(pipeline, runId)).state, 'applied')
  const inAllThree = Object.entries(key.planted).filter(([, files]) => files.length === 3).map(([code]) => code).sort()
  t.ok(inAllThree.length > 0 && inAllThree.length < key.valid.length, 'some valid codes are in two files only')
  t.notOk(inAllThree.includes('HAPPYHRS'))
  t.same(await liveSet(pipeline), inAllThree)
})

t.test('a partial set is never published: a run with configured files never ingested fails', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-missing')
  await writeFile(join(pipeline.dir, FILES[0]), gzipSync(Buffer.from('SHARED01\nONLYONE1\n')))
  await startAggregator(t, pipeline.config)
  const { runId } = await ingestRun(pipeline, [FILES[0]])

  const result = await runResult(pipeline, runId)
  t.equal(result[RUN_RESULT.state], 'failed')
  t.equal(result[RUN_RESULT.error],
    'AGGREGATOR_FILES_MISSING: couponbase2.gz, couponbase3.gz have no complete segment yet; ingest them (POST /admin/ingest) before a partial run can be applied')
  t.equal(await pipeline.redis.exists(pipeline.keys.valid), 0, 'no live set')
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.generation), null, 'no generation: the API still answers 503')
  t.same(await pipeline.redis.keys(pipeline.keys.staging('*')), [], 'no staging set is left behind')
})

t.test('a run requested first but completed last is applied over a later run, and its data is not dropped', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-order')
  const produce = async (file: string, runId: string, codes: string[]): Promise<void> => {
    await writeCodes(pipeline, file, codes)
    await produceFile({ config: pipeline.config, kafka: pipeline.kafka, logger: silentLogger, file, runId })
  }
  await applySmallBaseline(t, pipeline)

  // Run A (all files) is requested before run B (file 1 only); B's file 1 lands after A's file 1
  // but before A's files 2 and 3, so B completes (and is applied) first.
  const runA = newRunId(new Date(Date.now() - 1000))
  const runB = newRunId()
  const requestedAt = new Date().toISOString()
  await publishRunRecord(pipeline.kafka, pipeline.config, { type: 'run', runId: runA, files: FILES, requestedAt, source: 'cli' })
  await publishRunRecord(pipeline.kafka, pipeline.config, { type: 'run', runId: runB, files: [FILES[0]], requestedAt, source: 'cli' })
  await produce(FILES[0], runA, ['AFILE1CD', 'SHARED02'])
  await produce(FILES[0], runB, ['BFILE1CD', 'SHARED02'])
  t.equal((await runResult(pipeline, runB)).state, 'applied', 'B is applied with the older segments of files 2 and 3')
  t.same(await liveSet(pipeline), ['SHARED02'])
  await produce(FILES[1], runA, ['AFILE1CD', 'BFILE1CD', 'NEWTWO01', 'SHARED02'])
  await produce(FILES[2], runA, ['NEWTWO01', 'SHARED02'])

  const result = await runResult(pipeline, runA)
  t.equal(result[RUN_RESULT.state], 'applied', JSON.stringify(result))
  t.same(await liveSet(pipeline), ['BFILE1CD', 'NEWTWO01', 'SHARED02'], 'B\'s file 1 with A\'s files 2 and 3')
  const meta = await pipeline.redis.hgetall(pipeline.keys.meta)
  t.equal(meta[META.generation], runA, 'the generation is the run whose completion triggered the swap')
  t.same((JSON.parse(meta[META.segments]) as Array<{ runId: string }>).map((s) => s.runId), [runB, runA, runA])
})

t.test('a transient failure is retried after a 5 s backoff, and the run then succeeds', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-retry')
  await writeCodes(pipeline, FILES[0], ['SHARED01', 'SHARED02', 'ONLYONE1'])
  await writeCodes(pipeline, FILES[1], ['SHARED01', 'SHARED02', 'ONLYTWO1'])
  await writeCodes(pipeline, FILES[2], ['SHARED02', 'ONLYTHRE'])
  const errors: Array<Record<string, any>> = []
  const logger = pino({ level: 'error' }, { write: (line: string) => { errors.push(JSON.parse(line)) } })
  const aggregator = new Aggregator({ config: pipeline.config, logger })
  t.teardown(() => aggregator.close())
  await aggregator.start()

  // Another writer adds a member to the run's staging set while it is written: the swap's check
  // (staged count = written count) fails with a retriable error, the first time only.
  const runId = newRunId()
  let injected = false
  onRunPhase(t, (event) => {
    if (injected || event.runId !== runId || event.phase !== 'staging') return
    injected = true
    // The partitions are staged under the run's plan id (the run and a digest of its plan).
    pipeline.redis.hget(pipeline.keys.plan, PLAN.planId)
      .then(async (planId) => await pipeline.redis.sadd(pipeline.keys.staging(planId as string), 'FOREIGN1'))
      .catch((err: unknown) => { t.error(err) })
  })
  await ingestRun(pipeline, FILES, runId)

  const result = await runResult(pipeline, runId)
  t.equal(result[RUN_RESULT.state], 'applied', JSON.stringify(result))
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'], 'the retried run published the right set, without the foreign member')
  t.equal(errors.length, 1, 'one failed attempt')
  const [failure] = errors
  t.equal(failure.msg, 'aggregation failed; retrying in 5 s')
  t.equal(failure.failures, 1)
  t.equal(failure.retryInMs, 5000)
  t.equal(failure.err?.code, 'AGGREGATOR_STAGING_INCOMPLETE')
  t.match(failure.err?.message, `the staging set of run ${runId} holds 3 codes but its partitions recorded 2; not swapping, deciding them again`)
  const waited = Date.parse(result[RUN_RESULT.appliedAt]) - Number(failure.time)
  t.ok(waited >= 5000, `applied ${waited} ms after the failure: not before the backoff`)
})

t.test('a restarted coordinator replays coupons.segments from the point kept in meta, not from its start, and relabels no old run', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-replay')
  await writeCodes(pipeline, FILES[0], ['SHARED01', 'ONLYONE1'])
  await writeCodes(pipeline, FILES[1], ['SHARED01', 'ONLYTWO1'])
  await writeCodes(pipeline, FILES[2], ['SHARED01', 'ONLYTHRE'])
  const first = new Aggregator({ config: pipeline.config, logger: silentLogger })
  t.teardown(() => first.close())
  await first.start()
  const runs: string[] = []
  for (let i = 0; i < 4; i++) {
    const { runId } = await ingestRun(pipeline, FILES)
    t.equal((await runResult(pipeline, runId)).state, 'applied')
    runs.push(runId)
  }
  const replayFrom = await waitFor('replayFrom to pass the older runs', async () => {
    const value = await pipeline.redis.hget(pipeline.keys.meta, META.replayFrom)
    return value !== null && Number(value) > 0 ? Number(value) : null
  })
  await first.close()
  const resultsBefore = await Promise.all(runs.map(async (runId) => await pipeline.redis.hgetall(pipeline.keys.runResult(runId))))

  const lines: Array<Record<string, any>> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const restarted = new Aggregator({ config: pipeline.config, logger })
  t.teardown(() => restarted.close())
  await restarted.start()
  const replay = await waitFor('the restarted coordinator to replay', async () => lines.find((line) => line.msg === 'coordinating: replaying coupons.segments') ?? null)
  t.equal(replay.from, String(replayFrom), 'it replays from meta\'s replayFrom')
  // 4 runs wrote 4 run records and 12 manifests; the last run's 4 records are all a restart needs.
  t.ok(Number(replay.to) - replayFrom + 1 <= 4, `it replays ${Number(replay.to) - replayFrom + 1} records of ${Number(replay.to) + 1}`)
  await waitFor('the replay to end', async () => lines.some((line) => line.msg === 'coupons.segments replayed') ? true : null)
  t.same(await Promise.all(runs.map(async (runId) => await pipeline.redis.hgetall(pipeline.keys.runResult(runId)))), resultsBefore, 'no run result was rewritten')
})

t.test('KAFKA_PARTITIONS raised: a full run re-partitions every file and is applied with the new count; a run mixing counts fails naming them', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-repartition', { KAFKA_PARTITIONS: '2' })
  const key: AnswerKey = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 14 })
  await startAggregator(t, pipeline.config)
  const first = await ingestRun(pipeline, FILES)
  t.equal((await runResult(pipeline, first.runId)).state, 'applied')
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.partitions), '2')

  // The operator raises the count and runs a full ingest: the topics grow, the live set keeps serving.
  const wider = { ...pipeline, config: { ...pipeline.config, kafkaPartitions: 4 } }
  const second = await ingestRun(wider, FILES)
  t.same(second.manifests.map((manifest) => manifest.partitions.length), [4, 4, 4], 'every file is produced into 4 partitions')
  const result = await runResult(pipeline, second.runId, 90_000)
  t.equal(result[RUN_RESULT.state], 'applied', JSON.stringify(result))
  t.same(await liveSet(pipeline), key.valid, 'the set is the same answer key, from 4 partitions')
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.partitions), '4')
  t.same(Object.values(JSON.parse(result[RUN_RESULT.deciders]) as Record<string, number[]>).flat().sort(), [0, 1, 2, 3], 'all 4 partitions were decided')

  // One file produced with 2 partitions again (bypassing the api's refusal): the run cannot line up.
  const narrow = await ingestRun(pipeline, [FILES[0]])
  const mixed = await runResult(pipeline, narrow.runId)
  t.equal(mixed[RUN_RESULT.state], 'failed')
  t.equal(mixed[RUN_RESULT.error], 'AGGREGATOR_PARTITIONS_MISMATCH: the current segments were produced with different partition counts (couponbase1.gz: 2, couponbase2.gz: 4, couponbase3.gz: 4); ' +
    'KAFKA_PARTITIONS changed between runs: run a full ingest (all files) to re-partition every file')
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.generation), second.runId, 'the live set is untouched')
})
