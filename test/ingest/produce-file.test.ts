// produceFile against the real Kafka: what goes in comes back out per partition, the manifest
// describes exactly the records of its segment, and bad input fails loudly with no manifest.
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { produceFile, type IngestProgress } from '../../src/ingest/produce-file.js'
import { isCouponsError, type ErrorCode } from '../../src/shared/errors.js'
import { topicNames } from '../../src/shared/kafka.js'
import { newRunId } from '../../src/shared/segments.js'
import { deleteTopics, silentLogger, testConfig, testKafka } from '../helpers/test-env.js'
import { codesOfSegment, expectedCodes, readManifests, readTopic } from '../helpers/ingest-read.js'

const logger = silentLogger

async function setup (t: Test, label: string) {
  const dir = await mkdtemp(join(tmpdir(), `ingest-${label}-`))
  const config = testConfig(label, { COUPON_DATA_DIR: dir })
  const kafka = testKafka(config)
  t.teardown(async () => {
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, config, kafka }
}

t.test('a generated file comes back code for code, per partition, as the manifest says', async (t) => {
  const { dir, config, kafka } = await setup(t, 'produce')
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 7 })
  const file = 'couponbase2.gz'
  const path = join(dir, file)
  const runId = newRunId()
  const progress: IngestProgress[] = []

  const manifest = await produceFile({ config, kafka, logger, file, runId, onProgress: (p) => progress.push(p) })

  const expected = expectedCodes(path, config.kafkaPartitions)
  const records = await readTopic(kafka, topicNames(config).data(file))
  t.same(codesOfSegment(records, manifest, config.kafkaPartitions), expected.perPartition, 'the multiset of codes per partition')

  const compressed = await readFile(path)
  t.equal(manifest.recordFormat, 'words', 'the manifest names the records\' format')
  t.equal(manifest.file, file)
  t.equal(manifest.runId, runId)
  t.equal(manifest.topic, topicNames(config).data(file))
  t.equal(manifest.fileBytes, compressed.length)
  t.equal(manifest.sha256, createHash('sha256').update(compressed).digest('hex'))
  const stats = await stat(path)
  t.same(manifest.fileIdentity, { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs }, 'the identity of the file it read')
  t.equal(manifest.lines, expected.lines)
  t.equal(manifest.codes, expected.perPartition.reduce((n, codes) => n + codes.length, 0))
  t.equal(manifest.partitions.length, config.kafkaPartitions)
  for (const range of manifest.partitions) {
    const mine = records.filter((r) => r.partition === range.partition && r.headers.segment === manifest.segmentId)
    t.equal(range.codes, expected.perPartition[range.partition].length, `codes of partition ${range.partition}`)
    t.equal(range.records, mine.length, `records of partition ${range.partition}`)
    const offsets = mine.map((r) => BigInt(r.offset))
    t.equal(range.firstOffset, offsets.reduce((a, b) => a < b ? a : b).toString(), `first offset of partition ${range.partition}`)
    t.equal(range.lastOffset, offsets.reduce((a, b) => a > b ? a : b).toString(), `last offset of partition ${range.partition}`)
    t.ok(mine.every((r) => r.value.length <= 64 * 1024), 'records are at most 64 KiB')
  }

  t.same(await readManifests(kafka, topicNames(config).segments), [manifest], 'the manifest is on the segments topic')
  const total = compressed.length
  t.same(progress[0], { percent: 0, bytesRead: 0, bytesTotal: total, lines: 0, codes: 0 }, 'the first report: the size, nothing read yet')
  t.same(progress.at(-1), { percent: 100, bytesRead: total, bytesTotal: total, lines: manifest.lines, codes: manifest.codes }, 'the last report: all of it')
})

t.test('progress is reported while the file streams, a few times a second, not per line', async (t) => {
  const { dir, config, kafka } = await setup(t, 'progress')
  // Large enough to stream for longer than one 250 ms reporting interval on any machine here.
  await generateCoupons({ outDir: dir, scale: 0.02, seed: 3 })
  const progress: IngestProgress[] = []
  const manifest = await produceFile({ config, kafka, logger, file: 'couponbase1.gz', runId: newRunId(), onProgress: (p) => progress.push(p) })
  const midway = progress.filter((p) => p.percent > 0 && p.percent < 100)
  t.ok(midway.length >= 1, `${midway.length} reports between 0% and 100%`)
  t.ok(midway.every((p, i) => i === 0 || p.bytesRead >= midway[i - 1].bytesRead), 'bytes read only grow')
  t.ok(midway.some((p) => p.codes > 0 && p.codes < manifest.codes), 'codes are counted as they stream')
  t.ok(progress.length < manifest.lines / 1000, `${progress.length} reports for ${manifest.lines} lines: not per line`)
})

t.test('two productions of one file are two segments with their own records', async (t) => {
  const { dir, config, kafka } = await setup(t, 'twice')
  const file = 'couponbase1.gz'
  await writeFile(join(dir, file), gzipSync(Buffer.from('AAAAAAAA\nBBBBBBBB\nCCCCCCCC\n')))
  const runId = newRunId()
  const [a, b] = await Promise.all([
    produceFile({ config, kafka, logger, file, runId }),
    produceFile({ config, kafka, logger, file, runId })
  ])
  t.not(a.segmentId, b.segmentId)
  const records = await readTopic(kafka, topicNames(config).data(file))
  for (const manifest of [a, b]) {
    const codes = codesOfSegment(records, manifest, config.kafkaPartitions).flat().sort()
    t.same(codes, ['AAAAAAAA', 'BBBBBBBB', 'CCCCCCCC'])
  }
})

t.test('CRLF line ends and surrounding spaces are handled by the code rule', async (t) => {
  const { dir, config, kafka } = await setup(t, 'crlf')
  const file = 'couponbase1.gz'
  await writeFile(join(dir, file), gzipSync(Buffer.from(' ABCDEFGH \r\nXYZ12345ab\r\n\tshort\r\n12345678901\r\nAAAAAAAA BBBBBBBBB')))
  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId() })
  t.equal(manifest.lines, 5)
  t.equal(manifest.codes, 4)
  const records = await readTopic(kafka, topicNames(config).data(file))
  t.same(codesOfSegment(records, manifest, config.kafkaPartitions).flat().sort(), ['AAAAAAAA', 'ABCDEFGH', 'BBBBBBBBB', 'XYZ12345ab'])
})

t.test('the lines format, asked for, writes the codes as text records and says so in the manifest', async (t) => {
  const { dir, config, kafka } = await setup(t, 'lines')
  const file = 'couponbase1.gz'
  await writeFile(join(dir, file), gzipSync(Buffer.from('AAAAAAAA\nBBBBBBBBB\nCCCCCCCCCC\n')))
  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId(), recordFormat: 'lines' })
  t.equal(manifest.recordFormat, 'lines')
  const records = (await readTopic(kafka, topicNames(config).data(file))).filter((r) => r.headers.segment === manifest.segmentId)
  t.same(records.flatMap((r) => r.value.toString('latin1').split('\n')).sort(), ['AAAAAAAA', 'BBBBBBBBB', 'CCCCCCCCCC'], 'codes joined by LF')
})

t.test('codes that all go to one partition leave in record batches below Kafka\'s 1 MB limit', async (t) => {
  const { dir, config: base, kafka } = await setup(t, 'one-partition')
  const config = { ...base, kafkaPartitions: 1 }
  await generateCoupons({ outDir: dir, scale: 0.002, seed: 5 })
  const file = 'couponbase1.gz'
  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId() })
  t.ok(manifest.codes * 8 > 1 << 20, `${manifest.codes} codes: more than 1 MB of packed records for the one partition`)
  const records = await readTopic(kafka, topicNames(config).data(file))
  t.same(codesOfSegment(records, manifest, 1), expectedCodes(join(dir, file), 1).perPartition, 'every code, once')
})

/** Creates the file's data topic with `partitions`, as an earlier KAFKA_PARTITIONS would have. */
async function topicWith (kafka: ReturnType<typeof testKafka>, topic: string, partitions: number): Promise<void> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true })
  } finally {
    await admin.disconnect()
  }
}

async function partitionsOf (kafka: ReturnType<typeof testKafka>, topic: string): Promise<Array<{ partition: number, high: string }>> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    return (await admin.fetchTopicOffsets(topic)).map(({ partition, high }) => ({ partition, high })).sort((a, b) => a.partition - b.partition)
  } finally {
    await admin.disconnect()
  }
}

t.test('a data topic with fewer partitions than KAFKA_PARTITIONS grows to it, and the segment uses them all', async (t) => {
  const { dir, config, kafka } = await setup(t, 'grow')
  t.equal(config.kafkaPartitions, 4)
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 9 })
  const file = 'couponbase1.gz'
  const topic = topicNames(config).data(file)
  await topicWith(kafka, topic, 2)

  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId() })
  const partitions = await partitionsOf(kafka, topic)
  t.equal(partitions.length, 4, 'the topic has grown to 4 partitions')
  t.same(manifest.partitions.map((range) => range.partition), [0, 1, 2, 3], 'the manifest has 4 ranges')
  t.ok(manifest.partitions.every((range) => range.codes > 0), 'each with codes, the new partitions too')
  const records = await readTopic(kafka, topic)
  t.same(codesOfSegment(records, manifest, 4), expectedCodes(join(dir, file), 4).perPartition, 'every code in its partition of hash mod 4')
})

t.test('a data topic with more partitions than KAFKA_PARTITIONS keeps them, and the segment leaves the extra ones empty', async (t) => {
  const { dir, config: four, kafka } = await setup(t, 'shrink')
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 10 })
  const file = 'couponbase1.gz'
  const topic = topicNames(four).data(file)
  await topicWith(kafka, topic, 4)
  const config = { ...four, kafkaPartitions: 2 }

  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId() })
  const partitions = await partitionsOf(kafka, topic)
  t.equal(partitions.length, 4, 'Kafka cannot shrink a topic: still 4 partitions')
  t.same(partitions.filter((p) => p.partition >= 2), [{ partition: 2, high: '0' }, { partition: 3, high: '0' }], 'nothing was produced to partitions 2 and 3')
  t.same(manifest.partitions.map((range) => range.partition), [0, 1], 'the manifest has 2 ranges')
  const records = await readTopic(kafka, topic)
  t.same(codesOfSegment(records, manifest, 2), expectedCodes(join(dir, file), 2).perPartition, 'every code in its partition of hash mod 2')
})

t.test('a gzip of nothing is a valid segment with zero codes', async (t) => {
  const { dir, config, kafka } = await setup(t, 'empty')
  const file = 'couponbase2.gz'
  await writeFile(join(dir, file), gzipSync(Buffer.alloc(0)))
  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId() })
  t.equal(manifest.codes, 0)
  t.equal(manifest.lines, 0)
  t.ok(manifest.partitions.every((p) => p.records === 0 && p.firstOffset === null && p.lastOffset === null), 'no records')
  t.equal((await readManifests(kafka, topicNames(config).segments)).length, 1)
})

async function rejectsWith (t: Test, promise: Promise<unknown>, code: ErrorCode, fragment: RegExp): Promise<void> {
  try {
    await promise
    t.fail(`expected ${code}`)
  } catch (err) {
    t.ok(isCouponsError(err, code), `fails with ${code} (got ${(err as { code?: string }).code})`)
    t.match((err as Error).message, fragment)
    t.equal((err as { retriable?: boolean }).retriable, false, 'is not retriable')
  }
}

t.test('bad input fails with a clear error and writes no manifest', async (t) => {
  const { dir, config, kafka } = await setup(t, 'bad')
  const good = gzipSync(Buffer.from(Array.from({ length: 50_000 }, (_, i) => `CODE${String(i).padStart(6, '0')}`).join('\n')))
  const corrupt = Buffer.from(good)
  corrupt.fill(0x55, 2000, 2100)
  const enormous = gzipSync(Buffer.alloc(3 * 1024 * 1024, 'A'))
  const cases: Array<[file: string, content: Buffer | null, code: ErrorCode, fragment: RegExp]> = [
    ['missing.gz', null, 'INGEST_FILE_MISSING', /missing\.gz: no such file/],
    ['zero.gz', Buffer.alloc(0), 'INGEST_TRUNCATED_GZIP', /zero\.gz: 0 bytes, not even a gzip header \(a copy still in progress\?\)/],
    ['plain.gz', Buffer.from('AAAAAAAA\nBBBBBBBB\n'), 'INGEST_CORRUPT_GZIP', /plain\.gz: not a gzip file/],
    ['truncated.gz', good.subarray(0, Math.floor(good.length * 0.6)), 'INGEST_TRUNCATED_GZIP', /truncated\.gz: truncated gzip/],
    ['corrupt.gz', corrupt, 'INGEST_CORRUPT_GZIP', /corrupt\.gz: corrupt gzip/],
    ['enormous.gz', enormous, 'INGEST_LINE_TOO_LONG', /enormous\.gz: a line is longer than/]
  ]
  for (const [file, content, code, fragment] of cases) {
    if (content !== null) await writeFile(join(dir, file), content)
    await rejectsWith(t, produceFile({ config, kafka, logger, file, runId: newRunId() }), code, fragment)
  }
  t.same(await readManifests(kafka, topicNames(config).segments), [], 'no manifest at all')
  const admin = kafka.admin()
  await admin.connect()
  t.notOk((await admin.listTopics()).includes(topicNames(config).data('missing.gz')), 'a missing file creates no topic')
  await admin.disconnect()
})

t.test('a path instead of a file name is refused', async (t) => {
  const { config, kafka } = await setup(t, 'path')
  await rejectsWith(t, produceFile({ config, kafka, logger, file: '../etc/passwd', runId: newRunId() }), 'INGEST_BAD_FILE_NAME', /not a file name/)
})
