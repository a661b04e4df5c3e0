// readPartition against the real Kafka: it reads exactly a segment's offset range of one
// partition, keeps only the records whose segment header is that segment's, and checks what it
// read against the manifest's counts.
import type { Admin, Kafka, Producer } from 'kafkajs'
import t, { type Test } from 'tap'
import { Sfc32 } from '../../src/gen/random.js'
import { packCode, partitionOf, unpackCode } from '../../src/shared/code-packing.js'
import type { Config } from '../../src/shared/config.js'
import { ensureTopics, topicNames } from '../../src/shared/kafka.js'
import { SEGMENT_HEADER, type PartitionRange } from '../../src/shared/segments.js'
import { PartitionState } from '../../src/aggregator/partition-state.js'
import { readPartition, type SegmentRead } from '../../src/aggregator/read-partition.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { randomCode } from '../helpers/random-code.js'
import { recordRunPhases } from '../helpers/run-phases.js'
import { deleteTopics, silentLogger, testConfig, testKafka } from '../helpers/test-env.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz']
const PARTITION = 2

interface Setup { config: Config, kafka: Kafka, admin: Admin, producer: Producer, rng: Sfc32 }

async function prepare (t: Test, seed: number): Promise<Setup> {
  const config = testConfig('read-partition')
  const kafka = testKafka(config)
  const admin = kafka.admin()
  const producer = kafka.producer()
  await admin.connect()
  await producer.connect()
  t.teardown(async () => {
    await producer.disconnect()
    await admin.disconnect()
    await deleteTopics(kafka, config.kafkaTopicPrefix)
  })
  const topics = FILES.map((file) => topicNames(config).data(file))
  await ensureTopics(admin, topics.map((topic) => ({ topic, numPartitions: config.kafkaPartitions })))
  // A topic this new may still answer "not the leader" to a ListOffsets for a moment.
  await waitFor('the new topics to answer offset requests', async () => {
    for (const topic of topics) await admin.fetchTopicOffsets(topic)
    return true
  })
  return { config, kafka, admin, producer, rng: new Sfc32(seed) }
}

/** `count` distinct random codes that hash to `partition`. */
function codesOf (setup: Setup, partition: number, count: number): string[] {
  const codes = new Set<string>()
  while (codes.size < count) {
    const code = randomCode(setup.rng)
    const { hi, lo } = packCode(code)
    if (partitionOf(hi, lo, setup.config.kafkaPartitions) === partition) codes.add(code)
  }
  return [...codes]
}

/** Appends one data record (codes joined by LF) and returns its offset. */
async function append (setup: Setup, file: string, segmentId: string, codes: string[], partition = PARTITION): Promise<string> {
  const [metadata] = await setup.producer.send({
    topic: topicNames(setup.config).data(file),
    acks: -1,
    messages: [{ partition, value: codes.join('\n'), headers: { [SEGMENT_HEADER]: segmentId } }]
  })
  return metadata.baseOffset as string
}

/** Appends one data record of the packed format (8 bytes a code) and returns its offset. */
async function appendPacked (setup: Setup, file: string, segmentId: string, codes: string[]): Promise<string> {
  const value = Buffer.alloc(8 * codes.length)
  codes.forEach((code, i) => {
    const { hi, lo } = packCode(code)
    value.writeUInt32BE(hi, 8 * i)
    value.writeUInt32BE(lo, 8 * i + 4)
  })
  return await appendValue(setup, file, segmentId, value)
}

async function appendValue (setup: Setup, file: string, segmentId: string, value: Buffer): Promise<string> {
  const [metadata] = await setup.producer.send({
    topic: topicNames(setup.config).data(file),
    acks: -1,
    messages: [{ partition: PARTITION, value, headers: { [SEGMENT_HEADER]: segmentId } }]
  })
  return metadata.baseOffset as string
}

function segmentRead (setup: Setup, file: string, segmentId: string, range: Omit<PartitionRange, 'partition'>, recordFormat?: string): SegmentRead {
  return { file, fileIndex: FILES.indexOf(file), topic: topicNames(setup.config).data(file), segmentId, recordFormat, range: { partition: PARTITION, ...range } }
}

async function read (setup: Setup, reads: SegmentRead[], state = new PartitionState()): Promise<Awaited<ReturnType<typeof readPartition>>> {
  const { kafka, admin, config } = setup
  return await readPartition({ kafka, admin, logger: silentLogger, runId: 'R1', partition: PARTITION, partitions: config.kafkaPartitions, reads, state })
}

function decided (state: PartitionState, minFiles: number): string[] {
  const { pairs, count } = state.decide(minFiles)
  return Array.from({ length: count }, (_, i) => unpackCode(pairs[2 * i], pairs[2 * i + 1])).sort()
}

t.test('reads exactly the records of its segment between its first and last offset', async (t) => {
  const setup = await prepare(t, 1)
  const [before, first, other, last, after] = [3, 4, 5, 6, 7].map((n) => codesOf(setup, PARTITION, n))
  await append(setup, FILES[0], 'S', before)
  const firstOffset = await append(setup, FILES[0], 'S', first)
  await append(setup, FILES[0], 'OTHER', other)
  const lastOffset = await append(setup, FILES[0], 'S', last)
  await append(setup, FILES[0], 'S', after)

  const state = new PartitionState()
  const counts = await read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset, lastOffset, records: 2, codes: first.length + last.length })], state)
  t.same(counts, [{ file: FILES[0], records: 2, codes: first.length + last.length }])
  t.same(decided(state, 1), [...first, ...last].sort(), 'the codes of the range\'s records of segment S, and no others')
})

t.test('reads one range per file, each code marked with its file', async (t) => {
  const setup = await prepare(t, 2)
  const [shared, onlyOne, onlyTwo] = [4, 3, 2].map((n) => codesOf(setup, PARTITION, n))
  const one = await append(setup, FILES[0], 'A', [...shared, ...onlyOne])
  const two = await append(setup, FILES[1], 'B', [...onlyTwo, ...shared])

  const state = new PartitionState()
  const counts = await read(setup, [
    segmentRead(setup, FILES[0], 'A', { firstOffset: one, lastOffset: one, records: 1, codes: 7 }),
    segmentRead(setup, FILES[1], 'B', { firstOffset: two, lastOffset: two, records: 1, codes: 6 })
  ], state)
  t.same(counts, [{ file: FILES[0], records: 1, codes: 7 }, { file: FILES[1], records: 1, codes: 6 }])
  t.same(decided(state, 2), [...shared].sort(), 'in both files: the shared codes only')
})

t.test('a segment with no record in the partition reads nothing', async (t) => {
  const setup = await prepare(t, 3)
  const state = new PartitionState()
  const counts = await read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: null, lastOffset: null, records: 0, codes: 0 })], state)
  t.same(counts, [{ file: FILES[0], records: 0, codes: 0 }])
  t.equal(state.length, 0)
})

t.test('fails with AGGREGATOR_COUNT_MISMATCH when the records hold other counts than the manifest', async (t) => {
  const setup = await prepare(t, 4)
  const codes = codesOf(setup, PARTITION, 5)
  const offset = await append(setup, FILES[0], 'S', codes)
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: offset, lastOffset: offset, records: 1, codes: 6 })]),
    { name: 'CouponsError', code: 'AGGREGATOR_COUNT_MISMATCH', message: new RegExp(`^couponbase1\\.gz: segment S partition ${PARTITION} should hold 6 codes in 1 records \\(manifest\\) but 5 codes in 1 records were read from `) })
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: offset, lastOffset: offset, records: 2, codes: 5 })]),
    { name: 'CouponsError', code: 'AGGREGATOR_COUNT_MISMATCH', message: /should hold 5 codes in 2 records \(manifest\) but 5 codes in 1 records were read/ })
})

t.test('fails with AGGREGATOR_RECORDS_MISSING, instead of waiting, when the range is not in the partition', async (t) => {
  const setup = await prepare(t, 5)
  const offset = await append(setup, FILES[0], 'S', codesOf(setup, PARTITION, 2))
  const beyond = String(BigInt(offset) + 5n)
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: offset, lastOffset: beyond, records: 2, codes: 4 })]),
    { name: 'CouponsError', code: 'AGGREGATOR_RECORDS_MISSING', message: new RegExp(`^couponbase1\\.gz: segment S needs offsets ${offset}\\.\\.${beyond} of .* partition ${PARTITION}, but the partition holds ${offset}\\.\\.${offset}$`) })
})

t.test('fails with AGGREGATOR_WRONG_PARTITION when a record holds a code of another partition', async (t) => {
  const setup = await prepare(t, 6)
  const stray = codesOf(setup, PARTITION + 1, 1)
  const offset = await append(setup, FILES[0], 'S', [...codesOf(setup, PARTITION, 2), ...stray])
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: offset, lastOffset: offset, records: 1, codes: 3 })]),
    { name: 'CouponsError', code: 'AGGREGATOR_WRONG_PARTITION', message: new RegExp(`^couponbase1\\.gz: partition ${PARTITION} holds codes that hash to another partition`) })
})

t.test('announces each batch it reads on the phase channel', async (t) => {
  const setup = await prepare(t, 7)
  const events = recordRunPhases(t)
  const offset = await append(setup, FILES[1], 'S', codesOf(setup, PARTITION, 2))
  await read(setup, [segmentRead(setup, FILES[1], 'S', { firstOffset: offset, lastOffset: offset, records: 1, codes: 2 })])
  t.same(events, [{ phase: 'reading', runId: 'R1', partition: PARTITION, file: FILES[1] }], 'one batch, one event')
})

t.test('reads packed records 8 bytes a code, beside a lines segment of another file', async (t) => {
  const setup = await prepare(t, 8)
  const [shared, onlyOne, onlyTwo] = [5, 3, 2].map((n) => codesOf(setup, PARTITION, n))
  const first = await appendPacked(setup, FILES[0], 'P', [...shared.slice(0, 2), ...onlyOne])
  const last = await appendPacked(setup, FILES[0], 'P', shared.slice(2))
  const lines = await append(setup, FILES[1], 'L', [...onlyTwo, ...shared])

  const state = new PartitionState()
  const counts = await read(setup, [
    segmentRead(setup, FILES[0], 'P', { firstOffset: first, lastOffset: last, records: 2, codes: 8 }, 'packed'),
    segmentRead(setup, FILES[1], 'L', { firstOffset: lines, lastOffset: lines, records: 1, codes: 7 }, 'lines')
  ], state)
  t.same(counts, [{ file: FILES[0], records: 2, codes: 8 }, { file: FILES[1], records: 1, codes: 7 }])
  t.same(decided(state, 2), [...shared].sort(), 'in both files: the shared codes only')
  t.same(decided(state, 1), [...shared, ...onlyOne, ...onlyTwo].sort(), 'every code, unpacked as it was')
})

t.test('fails with AGGREGATOR_RECORD_FORMAT, before reading, on a record format it does not know', async (t) => {
  const setup = await prepare(t, 9)
  const offset = await appendPacked(setup, FILES[0], 'S', codesOf(setup, PARTITION, 2))
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: offset, lastOffset: offset, records: 1, codes: 2 }, 'zstd-packed')]),
    { name: 'CouponsError', code: 'AGGREGATOR_RECORD_FORMAT', retriable: false, message: /^couponbase1\.gz: segment S has records of format "zstd-packed", which this aggregator cannot read/ })
})

t.test('fails with AGGREGATOR_BAD_RECORD on a packed record that is not whole codes, and AGGREGATOR_WRONG_PARTITION on a stray one', async (t) => {
  const setup = await prepare(t, 10)
  const torn = await appendValue(setup, FILES[0], 'S', Buffer.alloc(12))
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: torn, lastOffset: torn, records: 1, codes: 1 }, 'packed')]),
    { name: 'CouponsError', code: 'AGGREGATOR_BAD_RECORD', message: /has 12 bytes, not a whole number of 8-byte codes/ })
  const stray = await appendPacked(setup, FILES[0], 'T', [...codesOf(setup, PARTITION, 1), ...codesOf(setup, PARTITION + 1, 1)])
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'T', { firstOffset: stray, lastOffset: stray, records: 1, codes: 2 }, 'packed')]),
    { name: 'CouponsError', code: 'AGGREGATOR_WRONG_PARTITION' })
})
