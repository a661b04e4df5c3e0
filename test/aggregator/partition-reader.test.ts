// PartitionReader against the real Kafka, through a group consumer that owns the partitions (as in
// the aggregator): it reads exactly a segment's offset range of one partition, keeps only the
// records whose segment header is that segment's, checks what it read against the manifest's
// counts, seeks again for every read, stops on its signal, and pauses each topic once its range
// is read.
import type { Admin, Kafka, Producer } from 'kafkajs'
import t, { type Test } from 'tap'
import { Sfc32 } from '../../src/gen/random.js'
import { packCode, partitionOf, unpackCode } from '../../src/shared/code-packing.js'
import type { Config } from '../../src/shared/config.js'
import { ensureTopics, topicNames } from '../../src/shared/kafka.js'
import { SEGMENT_HEADER, type PartitionRange } from '../../src/shared/segments.js'
import { PartitionState } from '../../src/aggregator/partition-state.js'
import type { ReadCounts, SegmentRead } from '../../src/aggregator/partition-reader.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { isPaused, startGroupReader, type GroupReader } from '../helpers/group-reader.js'
import { randomCode } from '../helpers/random-code.js'
import { onRunPhase, recordRunPhases } from '../helpers/run-phases.js'
import { deleteTopics, testConfig, testKafka } from '../helpers/test-env.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']
const PARTITION = 2
/** A read that never ends fails the test after this long instead of at tap's timeout. */
const READ_TIMEOUT_MS = 30_000

interface Setup extends GroupReader { config: Config, kafka: Kafka, admin: Admin, producer: Producer, rng: Sfc32 }

async function prepare (t: Test, seed: number, options: { maxBytesPerPartition?: number } = {}): Promise<Setup> {
  const config = testConfig('partition-reader')
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
  const names = topicNames(config)
  const topics = FILES.map((file) => names.data(file))
  await ensureTopics(admin, topics.map((topic) => ({ topic, numPartitions: config.kafkaPartitions })))
  // A topic this new may still answer "not the leader" to a ListOffsets for a moment.
  await waitFor('the new topics to answer offset requests', async () => {
    for (const topic of topics) await admin.fetchTopicOffsets(topic)
    return true
  })
  const group = await startGroupReader(t, kafka, { topics, segmentsTopic: names.segments, ...options })
  return { ...group, config, kafka, admin, producer, rng: new Sfc32(seed) }
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

function topicOf (setup: Setup, file: string): string {
  return topicNames(setup.config).data(file)
}

/** Appends one data record (codes joined by LF) and returns its offset. */
async function append (setup: Setup, file: string, segmentId: string, codes: string[]): Promise<string> {
  return await appendValue(setup, file, segmentId, Buffer.from(codes.join('\n')))
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

/** Appends one data record of the words format (a little-endian uint64 a code: hi | lo | 4 zero bits), with `fileBits` set in each word. */
async function appendWords (setup: Setup, file: string, segmentId: string, codes: string[], fileBits = 0n): Promise<string> {
  const value = Buffer.alloc(8 * codes.length)
  codes.forEach((code, i) => {
    const { hi, lo } = packCode(code)
    value.writeBigUInt64LE((BigInt(hi) << 34n) | (BigInt(lo) << 4n) | fileBits, 8 * i)
  })
  return await appendValue(setup, file, segmentId, value)
}

async function appendValue (setup: Setup, file: string, segmentId: string, value: Buffer): Promise<string> {
  const [metadata] = await setup.producer.send({
    topic: topicOf(setup, file),
    acks: -1,
    messages: [{ partition: PARTITION, value, headers: { [SEGMENT_HEADER]: segmentId } }]
  })
  return metadata.baseOffset as string
}

function segmentRead (setup: Setup, file: string, segmentId: string, range: Omit<PartitionRange, 'partition'>, recordFormat?: string): SegmentRead {
  return { file, fileIndex: FILES.indexOf(file), topic: topicOf(setup, file), segmentId, recordFormat, range: { partition: PARTITION, ...range } }
}

async function read (setup: Setup, reads: SegmentRead[], options: { state?: PartitionState, signal?: AbortSignal, runId?: string } = {}): Promise<ReadCounts[]> {
  const { state = new PartitionState(), signal = AbortSignal.timeout(READ_TIMEOUT_MS), runId = 'R1' } = options
  return await setup.reader.read({ runId, partition: PARTITION, partitions: setup.config.kafkaPartitions, reads, state, signal })
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
  const counts = await read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset, lastOffset, records: 2, codes: first.length + last.length })], { state })
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
  ], { state })
  t.same(counts, [{ file: FILES[0], records: 1, codes: 7 }, { file: FILES[1], records: 1, codes: 6 }])
  t.same(decided(state, 2), [...shared].sort(), 'in both files: the shared codes only')
})

t.test('a segment with no record in the partition reads nothing', async (t) => {
  const setup = await prepare(t, 3)
  const state = new PartitionState()
  const counts = await read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: null, lastOffset: null, records: 0, codes: 0 })], { state })
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
  ], { state })
  t.same(counts, [{ file: FILES[0], records: 2, codes: 8 }, { file: FILES[1], records: 1, codes: 7 }])
  t.same(decided(state, 2), [...shared].sort(), 'in both files: the shared codes only')
  t.same(decided(state, 1), [...shared, ...onlyOne, ...onlyTwo].sort(), 'every code, unpacked as it was')
})

t.test('reads words records as whole blocks, beside packed and lines segments of the other files', async (t) => {
  const setup = await prepare(t, 11)
  const [inAll, wordsAndLines, wordsOnly, packedOnly, linesOnly] = [4, 3, 3, 2, 2].map((n) => codesOf(setup, PARTITION, n))
  const first = await appendWords(setup, FILES[2], 'W', [...inAll, ...wordsOnly.slice(0, 1)])
  const last = await appendWords(setup, FILES[2], 'W', [...wordsAndLines, ...wordsOnly.slice(1)])
  const packed = await appendPacked(setup, FILES[0], 'P', [...packedOnly, ...inAll])
  const lines = await append(setup, FILES[1], 'L', [...inAll, ...linesOnly, ...wordsAndLines])

  // Filled beyond its capacity of 2: the block copy grows the state like add() does.
  const state = new PartitionState(2)
  const counts = await read(setup, [
    segmentRead(setup, FILES[0], 'P', { firstOffset: packed, lastOffset: packed, records: 1, codes: 6 }, 'packed'),
    segmentRead(setup, FILES[1], 'L', { firstOffset: lines, lastOffset: lines, records: 1, codes: 9 }, 'lines'),
    segmentRead(setup, FILES[2], 'W', { firstOffset: first, lastOffset: last, records: 2, codes: 10 }, 'words')
  ], { state })
  t.same(counts, [{ file: FILES[0], records: 1, codes: 6 }, { file: FILES[1], records: 1, codes: 9 }, { file: FILES[2], records: 2, codes: 10 }])
  t.same(decided(state, 3), [...inAll].sort(), 'in all three files')
  t.same(decided(state, 2), [...inAll, ...wordsAndLines].sort(), 'in two files: each file counted once, by its own index')
  t.same(decided(state, 1), [...inAll, ...wordsAndLines, ...wordsOnly, ...packedOnly, ...linesOnly].sort(), 'every code, unpacked as it was')
})

t.test('fails with AGGREGATOR_BAD_RECORD on a words record that is not whole codes or has file bits set, and AGGREGATOR_WRONG_PARTITION on a stray code at its end', async (t) => {
  const setup = await prepare(t, 12)
  const torn = await appendValue(setup, FILES[2], 'S', Buffer.alloc(20))
  await t.rejects(read(setup, [segmentRead(setup, FILES[2], 'S', { firstOffset: torn, lastOffset: torn, records: 1, codes: 2 }, 'words')]),
    { name: 'CouponsError', code: 'AGGREGATOR_BAD_RECORD', message: /has 20 bytes, not a whole number of 8-byte codes/ })
  const flagged = await appendWords(setup, FILES[2], 'F', codesOf(setup, PARTITION, 2), 1n)
  await t.rejects(read(setup, [segmentRead(setup, FILES[2], 'F', { firstOffset: flagged, lastOffset: flagged, records: 1, codes: 2 }, 'words')]),
    { name: 'CouponsError', code: 'AGGREGATOR_BAD_RECORD', message: /has words whose file bits are not zero/ })
  const stray = await appendWords(setup, FILES[2], 'T', [...codesOf(setup, PARTITION, 3), ...codesOf(setup, PARTITION + 1, 1)])
  await t.rejects(read(setup, [segmentRead(setup, FILES[2], 'T', { firstOffset: stray, lastOffset: stray, records: 1, codes: 4 }, 'words')]),
    { name: 'CouponsError', code: 'AGGREGATOR_WRONG_PARTITION' })
})

t.test('fails with AGGREGATOR_RECORD_FORMAT, before reading, on a record format it does not know', async (t) => {
  const setup = await prepare(t, 9)
  const events = recordRunPhases(t)
  const offset = await appendPacked(setup, FILES[0], 'S', codesOf(setup, PARTITION, 2))
  await t.rejects(read(setup, [segmentRead(setup, FILES[0], 'S', { firstOffset: offset, lastOffset: offset, records: 1, codes: 2 }, 'zstd-packed')]),
    { name: 'CouponsError', code: 'AGGREGATOR_RECORD_FORMAT', retriable: false, message: /^couponbase1\.gz: segment S has records of format "zstd-packed", which this aggregator cannot read/ })
  t.same(events, [], 'no batch was read')
  t.ok(isPaused(setup.consumer, topicOf(setup, FILES[0]), PARTITION), 'the partition was never resumed')
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

t.test('reads of the same partition one after the other each read exactly their range, seeking forward and back', async (t) => {
  const setup = await prepare(t, 11)
  const [a1, a2, other, b1, b2] = [3, 4, 5, 6, 2].map((n) => codesOf(setup, PARTITION, n))
  const firstA = await append(setup, FILES[0], 'RUN-A', a1)
  const lastA = await append(setup, FILES[0], 'RUN-A', a2)
  await append(setup, FILES[0], 'OTHER', other)
  const firstB = await append(setup, FILES[0], 'RUN-B', b1)
  const lastB = await append(setup, FILES[0], 'RUN-B', b2)
  const rangeA = segmentRead(setup, FILES[0], 'RUN-A', { firstOffset: firstA, lastOffset: lastA, records: 2, codes: a1.length + a2.length })
  const rangeB = segmentRead(setup, FILES[0], 'RUN-B', { firstOffset: firstB, lastOffset: lastB, records: 2, codes: b1.length + b2.length })

  const first = new PartitionState()
  t.same(await read(setup, [rangeA], { state: first, runId: 'RA' }), [{ file: FILES[0], records: 2, codes: a1.length + a2.length }])
  t.same(decided(first, 1), [...a1, ...a2].sort(), 'the first run\'s codes')
  const second = new PartitionState()
  t.same(await read(setup, [rangeB], { state: second, runId: 'RB' }), [{ file: FILES[0], records: 2, codes: b1.length + b2.length }])
  t.same(decided(second, 1), [...b1, ...b2].sort(), 'the second run\'s codes, read after the first run\'s range')
  const again = new PartitionState()
  t.same(await read(setup, [rangeA], { state: again, runId: 'RA2' }), [{ file: FILES[0], records: 2, codes: a1.length + a2.length }])
  t.same(decided(again, 1), [...a1, ...a2].sort(), 'the first run\'s codes again, read after the second run\'s range')
})

t.test('a read aborted through its signal rejects with its reason, pauses its partitions, and the reader reads again', async (t) => {
  const setup = await prepare(t, 12)
  const [one, two] = [3, 4].map((n) => codesOf(setup, PARTITION, n))
  const offsetOne = await append(setup, FILES[0], 'A', one)
  const offsetTwo = await append(setup, FILES[1], 'B', two)
  const reads = [
    segmentRead(setup, FILES[0], 'A', { firstOffset: offsetOne, lastOffset: offsetOne, records: 1, codes: one.length }),
    segmentRead(setup, FILES[1], 'B', { firstOffset: offsetTwo, lastOffset: offsetTwo, records: 1, codes: two.length })
  ]
  // Each batch is one topic's: after the first one, the other file's range is still unread.
  const controller = new AbortController()
  const reason = new Error('the partition moved to another instance')
  onRunPhase(t, (event) => { if (event.runId === 'ABORTED' && event.phase === 'reading') controller.abort(reason) })

  const failure: unknown = await read(setup, reads, { runId: 'ABORTED', signal: controller.signal }).then(() => null, (err: unknown) => err)
  t.equal(failure, reason, 'rejected with the signal\'s reason itself')
  t.ok(isPaused(setup.consumer, reads[0].topic, PARTITION), `${FILES[0]} is paused again`)
  t.ok(isPaused(setup.consumer, reads[1].topic, PARTITION), `${FILES[1]} is paused again`)

  const state = new PartitionState()
  t.same(await read(setup, reads, { state, runId: 'AGAIN' }), [{ file: FILES[0], records: 1, codes: one.length }, { file: FILES[1], records: 1, codes: two.length }])
  t.same(decided(state, 1), [...one, ...two].sort(), 'the next read reads both ranges whole')
})

t.test('a topic whose range is read is paused at once while another topic\'s range is still being read', async (t) => {
  // A 1-byte fetch limit makes every fetch bring one record batch (one record) of each partition:
  // the one-record range of file 1 is read in the first fetch, the three of file 2 take three.
  const setup = await prepare(t, 13, { maxBytesPerPartition: 1 })
  const short = codesOf(setup, PARTITION, 2)
  const long = [2, 3, 4].map((n) => codesOf(setup, PARTITION, n))
  const onlyOffset = await append(setup, FILES[0], 'A', short)
  const longOffsets: string[] = []
  for (const codes of long) longOffsets.push(await append(setup, FILES[1], 'B', codes))
  const shortTopic = topicOf(setup, FILES[0])
  const longTopic = topicOf(setup, FILES[1])
  const seen: Array<{ file: string, shortPaused: boolean, longPaused: boolean }> = []
  onRunPhase(t, (event) => {
    if (event.phase !== 'reading') return
    seen.push({ file: event.file, shortPaused: isPaused(setup.consumer, shortTopic, PARTITION), longPaused: isPaused(setup.consumer, longTopic, PARTITION) })
  })

  const counts = await read(setup, [
    segmentRead(setup, FILES[0], 'A', { firstOffset: onlyOffset, lastOffset: onlyOffset, records: 1, codes: short.length }),
    segmentRead(setup, FILES[1], 'B', { firstOffset: longOffsets[0], lastOffset: longOffsets[2], records: 3, codes: long.flat().length })
  ])
  t.same(counts, [{ file: FILES[0], records: 1, codes: short.length }, { file: FILES[1], records: 3, codes: long.flat().length }])
  t.equal(seen.filter((e) => e.file === FILES[0]).length, 1, `${FILES[0]}'s range came in one batch`)
  t.equal(seen.filter((e) => e.file === FILES[1]).length, 3, `${FILES[1]}'s range came in three batches`)
  // Usually the one-batch range is done first; on a loaded machine a fetch may bring the other
  // topic's batches first. Either way, the range done first is paused while the other is fetched.
  const firstDone = seen.find((e) => e.shortPaused || e.longPaused)
  t.ok(firstDone !== undefined && firstDone.shortPaused !== firstDone.longPaused,
    `when the first range is read, its topic is paused and the other is still being fetched: ${JSON.stringify(seen)}`)
  t.ok(isPaused(setup.consumer, shortTopic, PARTITION) && isPaused(setup.consumer, longTopic, PARTITION), 'both are paused after the read')
})
