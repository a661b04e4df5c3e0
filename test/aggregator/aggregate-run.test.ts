// aggregateRun against the real Kafka and Redis, with segments produced by the real ingest: one
// aggregation decides every partition, swaps the set in and frees old records; a count mismatch
// or a stale set swaps nothing.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import type { Admin } from 'kafkajs'
import t, { type Test } from 'tap'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { produceFile } from '../../src/ingest/produce-file.js'
import { META } from '../../src/shared/redis-keys.js'
import { newRunId, type SegmentManifest } from '../../src/shared/segments.js'
import { aggregateRun, type RunStats } from '../../src/aggregator/aggregate-run.js'
import { ValidSetSwap } from '../../src/aggregator/valid-set-swap.js'
import { liveSet, setupPipeline, type Pipeline } from '../helpers/aggregator-fixtures.js'
import { recordRunPhases } from '../helpers/run-phases.js'
import { silentLogger } from '../helpers/test-env.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']

interface Setup { pipeline: Pipeline, admin: Admin, swap: ValidSetSwap }

async function prepare (t: Test, label: string): Promise<Setup> {
  const pipeline = await setupPipeline(t, label)
  const admin = pipeline.kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  return { pipeline, admin, swap: new ValidSetSwap(pipeline.redis, pipeline.config.redisPrefix, silentLogger) }
}

async function produce (setup: Setup, file: string, runId: string, codes?: string[]): Promise<SegmentManifest> {
  const { config, kafka, dir } = setup.pipeline
  if (codes !== undefined) await writeFile(join(dir, file), gzipSync(Buffer.from(codes.join('\n') + '\n')))
  return await produceFile({ config, kafka, logger: silentLogger, file, runId })
}

async function aggregate (setup: Setup, runId: string, segments: SegmentManifest[], segmentsOffset: bigint): Promise<RunStats> {
  const { config, kafka } = setup.pipeline
  return await aggregateRun({ config, kafka, admin: setup.admin, swap: setup.swap, logger: silentLogger, runId, segments, segmentsOffset })
}

/** Three small files whose valid set is SHARED01 and SHARED02, produced and aggregated. */
async function applyBaseline (setup: Setup): Promise<{ runId: string, manifests: SegmentManifest[] }> {
  const runId = newRunId()
  const manifests = [
    await produce(setup, FILES[0], runId, ['SHARED01', 'SHARED02', 'ONLYONE1']),
    await produce(setup, FILES[1], runId, ['SHARED01', 'SHARED02', 'ONLYTWO1']),
    await produce(setup, FILES[2], runId, ['SHARED02', 'ONLYTHRE'])
  ]
  await aggregate(setup, runId, manifests, 3n)
  return { runId, manifests }
}

t.test('decides every partition into the staging set, swaps it in, and reports what it read', async (t) => {
  const setup = await prepare(t, 'run-apply')
  const { pipeline } = setup
  const key = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 31 })
  const runId = newRunId()
  const manifests: SegmentManifest[] = []
  for (const file of FILES) manifests.push(await produce(setup, file, runId))
  const events = recordRunPhases(t)

  const stats = await aggregate(setup, runId, manifests, 3n)

  t.same(await liveSet(pipeline), key.valid)
  t.equal(stats.outcome.state, 'applied')
  t.equal(stats.validCount, key.valid.length)
  t.same(stats.files, manifests.map(({ file, segmentId, codes }) => ({ file, segmentId, runId, codesRead: codes })))
  t.equal(stats.codesRead, manifests.reduce((sum, m) => sum + m.codes, 0))
  const meta = await pipeline.redis.hgetall(pipeline.keys.meta)
  t.equal(meta[META.generation], runId)
  t.equal(meta[META.validCount], String(key.valid.length))
  t.equal(meta[META.segmentsOffset], '3')
  t.same(await pipeline.redis.keys(pipeline.keys.staging('*')), [], 'the staging set became the live set')

  const staged = events.filter((e) => e.phase === 'staging')
  t.same(staged.map((e) => e.partition), [0, 1, 2, 3], 'every partition is staged, in order')
  t.equal(staged.reduce((sum, e) => sum + (e.phase === 'staging' ? e.validCount : 0), 0), key.valid.length)
  for (const event of staged) {
    const at = events.indexOf(event)
    t.ok(events.slice(0, at).some((e) => e.phase === 'reading' && e.partition === event.partition), `partition ${event.partition} is read before it is staged`)
  }
  t.same(events.at(-1), { phase: 'after-exec', runId, validCount: key.valid.length }, 'the swap comes last')
  t.ok(events.every((e) => e.runId === runId))
})

t.test('a count mismatch fails with AGGREGATOR_COUNT_MISMATCH and nothing is swapped', async (t) => {
  const setup = await prepare(t, 'run-mismatch')
  const { pipeline } = setup
  const baseline = await applyBaseline(setup)
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'])

  // A new file 3 that would make ONLYONE1 valid, with a manifest claiming one code too many.
  const runId = newRunId()
  const manifest = await produce(setup, FILES[2], runId, ['ONLYONE1', 'ONLYTHRE'])
  const range = manifest.partitions.find((r) => r.codes > 0)
  if (range === undefined) throw new Error('the file has codes in some partition')
  const lying = { ...manifest, partitions: manifest.partitions.map((r) => r === range ? { ...r, codes: r.codes + 1 } : r) }
  const events = recordRunPhases(t)

  await t.rejects(aggregate(setup, runId, [baseline.manifests[0], baseline.manifests[1], lying], 4n), {
    name: 'CouponsError',
    code: 'AGGREGATOR_COUNT_MISMATCH',
    message: new RegExp(`^couponbase3\\.gz: segment ${manifest.segmentId} partition ${range.partition} should hold ${range.codes + 1} codes`)
  })
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'], 'the live set is unchanged')
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.generation), baseline.runId, 'the generation is unchanged')
  t.notOk(events.some((e) => e.phase === 'after-exec'), 'the swap was never reached')
})

t.test('a set no fresher than the applied one is not swapped in: superseded', async (t) => {
  const setup = await prepare(t, 'run-stale')
  const { pipeline } = setup
  const baseline = await applyBaseline(setup)

  const runId = newRunId()
  const older = await produce(setup, FILES[0], runId, ['SHARED01', 'ONLYTWO1'])
  const stats = await aggregate(setup, runId, [older, baseline.manifests[1], baseline.manifests[2]], 3n)
  t.same(stats.outcome, { state: 'superseded', generation: baseline.runId })
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'])
  t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.generation), baseline.runId)
  t.same(await pipeline.redis.keys(pipeline.keys.staging('*')), [], 'its staging set is deleted')
})

t.test('after a swap, the records before each current segment are deleted from Kafka', async (t) => {
  const setup = await prepare(t, 'run-cleanup')
  const { admin } = setup
  const baseline = await applyBaseline(setup)
  const runId = newRunId()
  const current = await produce(setup, FILES[0], runId, ['SHARED01', 'SHARED02', 'NEWONE01'])
  await aggregate(setup, runId, [current, baseline.manifests[1], baseline.manifests[2]], 4n)

  t.ok(current.partitions.some((r) => r.firstOffset !== null && r.firstOffset !== '0'), 'SHARED01 and SHARED02 have baseline records before the current ones')
  const offsets = await admin.fetchTopicOffsets(current.topic)
  for (const range of current.partitions) {
    const low = offsets.find((o) => o.partition === range.partition)?.low
    if (range.firstOffset !== null) t.equal(low, range.firstOffset, `partition ${range.partition} starts at the current segment`)
    else t.equal(low, '0', `partition ${range.partition}, without a record of the current segment, is left as it was`)
  }
})

t.test('a segment of another partition count fails with AGGREGATOR_PARTITIONS_MISMATCH before reading anything', async (t) => {
  const setup = await prepare(t, 'run-partitions')
  const runId = newRunId()
  const manifest = await produce(setup, FILES[0], runId, ['SHARED01'])
  const events = recordRunPhases(t)
  await t.rejects(aggregate(setup, runId, [{ ...manifest, partitions: manifest.partitions.slice(1) }], 1n), {
    name: 'CouponsError',
    code: 'AGGREGATOR_PARTITIONS_MISMATCH',
    message: `couponbase1.gz: segment ${manifest.segmentId} has 3 partitions but KAFKA_PARTITIONS is 4`
  })
  t.same(events, [], 'nothing was read')
})
