// Reads partition p of every data topic, exactly the offset ranges of a plan's segments, into the
// partition state (DESIGN section 5), through the aggregator's one long-lived group consumer
// (issue 14): the group gives this instance its partitions, every one of them stays paused, and a
// read seeks each topic's partition p to its segment's first offset, resumes it, keeps the records
// whose `segment` header is that segment, and pauses it again at its last offset. No group is
// joined per read, and a topic whose range is done is paused at once instead of being fetched
// again until the slowest file is done.
// The codes read are then checked against the manifest's counts: a producer bug, a deleted record
// or a wrong partition fails the run instead of publishing a wrong set. A `words` record (the
// ingest's format since issue 15) goes into the state word by word, unparsed; `packed` records are
// copied 8 bytes a code, `lines` records (segments written before either) scanned as text; any other
// format fails the run (src/shared/segments.ts).
import type { Admin, Batch, Consumer, KafkaMessage } from 'kafkajs'
import { CodeScanner, type OnCode } from '../shared/code-rule.js'
import { hiOfWord, loOfWord, packHi, packLo, partitionOf } from '../shared/code-packing.js'
import { CouponsError } from '../shared/errors.js'
import type { Logger } from '../shared/logger.js'
import { PACKED_CODE_BYTES, RECORD_FORMATS, SEGMENT_HEADER, type PartitionRange, type RecordFormat } from '../shared/segments.js'
import type { PartitionState } from './partition-state.js'
import { publishRunPhase } from './run-phases.js'

export interface SegmentRead {
  file: string
  /** bit of this file in the files-seen mask */
  fileIndex: number
  topic: string
  segmentId: string
  /** the manifest's recordFormat; absent = `lines` */
  recordFormat?: string
  range: PartitionRange
}

export interface ReadOptions {
  /** the run this read belongs to (named in the phase events) */
  runId: string
  partition: number
  /** the plan's partition count (a code's partition is its hash modulo this) */
  partitions: number
  reads: SegmentRead[]
  state: PartitionState
  /** aborts the read: the partition moved to another instance, the plan changed, or closing */
  signal: AbortSignal
}

export interface ReadCounts {
  file: string
  records: number
  codes: number
}

interface Target {
  read: SegmentRead
  last: bigint
  /** the offset of the next record to take: records are taken in order, none skipped */
  next: bigint
  format: RecordFormat
  scanner: CodeScanner
  onCode: OnCode
  records: number
  /** codes of `packed` and `words` records (the scanner counts those of `lines` records) */
  packedCodes: number
}

interface ActiveRead {
  targets: Map<string, Target>
  remaining: number
  partition: number
  partitions: number
  runId: string
  state: PartitionState
  wrongPartition: string | null
  badRecord: string | null
  done: () => void
  fail: (err: unknown) => void
}

function formatOf (read: SegmentRead): RecordFormat {
  const format = read.recordFormat ?? 'lines'
  if ((RECORD_FORMATS as readonly string[]).includes(format)) return format as RecordFormat
  throw new CouponsError('AGGREGATOR_RECORD_FORMAT',
    `${read.file}: segment ${read.segmentId} has records of format ${JSON.stringify(format)}, which this aggregator cannot read (it reads ${RECORD_FORMATS.join(', ')}); upgrade the aggregator`)
}

const key = (topic: string, partition: number): string => `${topic}\u0000${partition}`

/**
 * Records taken but not yet added to the state, at most (onBatch): one fetch's worth, the
 * aggregator consumer's maxBytes, whose response buffer they lie in anyway.
 */
const ADD_AHEAD_BYTES = 16 << 20

/**
 * The messages of a fetched batch a reader that wants offset `next` should look at, in order (it
 * takes each one whose offset is its next, so none is skipped). A batch that starts after `next`
 * was fetched before a seek took effect: the partition is sought to `next` again and nothing is
 * taken. Otherwise the batch is resolved, so that the fetch position moves past it (a consumer
 * that never commits only moves past resolved offsets).
 */
export function messagesFrom (consumer: Consumer, batch: Batch, next: bigint, resolveOffset: (offset: string) => void): KafkaMessage[] {
  if (batch.messages.length === 0) return []
  if (BigInt(batch.firstOffset() as string) > next) {
    consumer.seek({ topic: batch.topic, partition: batch.partition, offset: next.toString() })
    return []
  }
  resolveOffset(batch.lastOffset())
  return batch.messages
}

export class PartitionReader {
  readonly #consumer: Consumer
  readonly #admin: Admin
  readonly #logger: Logger
  /** the read in progress (one at a time: the aggregator reads one partition while deciding another) */
  #active: ActiveRead | null = null
  #reading = false
  /** adding the records taken so far to the state (see onBatch) */
  #pending: Promise<void> = Promise.resolve()
  #pendingBytes = 0

  constructor (consumer: Consumer, admin: Admin, logger: Logger) {
    this.#consumer = consumer
    this.#admin = admin
    this.#logger = logger
  }

  /**
   * A fetched batch of a data topic (the consumer's eachBatch hands them all here). Batches of a
   * partition no read wants pause it; a batch that starts after the next record wanted (fetched
   * before a seek) seeks again.
   *
   * The records taken are added to the state right after this returns, while KafkaJS fetches the
   * next batch: its fetch loop waits for eachBatch before fetching again, and the broker's work
   * and the transfer would otherwise leave this thread idle (a quarter of the read, issue 15).
   * At most ADD_AHEAD_BYTES of records wait to be added, in the order they were fetched.
   */
  async onBatch (batch: Batch, resolveOffset: (offset: string) => void): Promise<void> {
    if (this.#pendingBytes >= ADD_AHEAD_BYTES) await this.#pending
    const active = this.#active
    const target = active?.targets.get(key(batch.topic, batch.partition))
    if (active === null || target === undefined || target.next > target.last) {
      this.#consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }])
      return
    }
    const taken: KafkaMessage[] = []
    let bytes = 0
    let complete = false
    for (const message of messagesFrom(this.#consumer, batch, target.next, resolveOffset)) {
      const offset = BigInt(message.offset)
      if (offset !== target.next) continue
      target.next = offset + 1n
      const header = message.headers?.[SEGMENT_HEADER]
      if (header !== undefined && header.toString() === target.read.segmentId && message.value !== null) {
        target.records++
        taken.push(message)
        bytes += message.value.length
      }
      if (offset === target.last) {
        this.#consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }])
        complete = --active.remaining === 0
        break
      }
    }
    publishRunPhase({ phase: 'reading', runId: active.runId, partition: active.partition, file: target.read.file })
    if (taken.length === 0 && !complete) return
    this.#pendingBytes += bytes
    this.#pending = this.#pending
      .then(async () => { await new Promise((resolve) => setImmediate(resolve)) })
      .then(() => {
        this.#pendingBytes -= bytes
        // A read that ended meanwhile (aborted) has no state to add to any more.
        if (this.#active !== active) return
        try {
          for (const message of taken) addRecord(active, target, batch, message)
          if (complete) active.done()
        } catch (err) {
          active.fail(err)
        }
      })
  }

  /** Reads one partition of every segment into `options.state`; the partitions must be this consumer's. */
  async read (options: ReadOptions): Promise<ReadCounts[]> {
    if (this.#reading) throw new Error('a PartitionReader reads one partition at a time')
    this.#reading = true
    try {
      return await this.#read(options)
    } finally {
      this.#reading = false
    }
  }

  async #read (options: ReadOptions): Promise<ReadCounts[]> {
    const { runId, partition, partitions, state, signal } = options
    const reads = options.reads.filter((read) => read.range.firstOffset !== null && read.range.lastOffset !== null)
    const counts = new Map(options.reads.map((read) => [read.file, { file: read.file, records: 0, codes: 0 }]))
    if (reads.length > 0) {
      const formats = reads.map(formatOf)
      await checkOffsetsExist(this.#admin, partition, reads)
      signal.throwIfAborted()
      let onAbort = (): void => {}
      const finished = new Promise<void>((resolve, reject) => {
        onAbort = () => { reject(signal.reason) }
        const active: ActiveRead = {
          targets: new Map(),
          remaining: reads.length,
          partition,
          partitions,
          runId,
          state,
          wrongPartition: null,
          badRecord: null,
          done: resolve,
          fail: reject
        }
        reads.forEach((read, i) => {
          const onCode: OnCode = (bytes, start, end) => {
            const hi = packHi(bytes, start, end)
            const lo = packLo(bytes, start, end)
            if (partitionOf(hi, lo, partitions) !== partition) active.wrongPartition ??= read.file
            state.add(hi, lo, read.fileIndex)
          }
          active.targets.set(key(read.topic, partition), {
            read,
            last: BigInt(read.range.lastOffset as string),
            next: BigInt(read.range.firstOffset as string),
            format: formats[i],
            scanner: new CodeScanner(),
            onCode,
            records: 0,
            packedCodes: 0
          })
        })
        this.#active = active
      })
      // Awaited below; an abort meanwhile must not count as unhandled.
      finished.catch(() => {})
      signal.addEventListener('abort', onAbort, { once: true })
      const active = this.#active as unknown as ActiveRead
      try {
        for (const target of active.targets.values()) {
          this.#consumer.seek({ topic: target.read.topic, partition, offset: target.next.toString() })
          this.#consumer.resume([{ topic: target.read.topic, partitions: [partition] }])
        }
        await finished
      } finally {
        signal.removeEventListener('abort', onAbort)
        this.#active = null
        // Nothing touches the state once the read is over.
        await this.#pending
        try {
          this.#consumer.pause(reads.map((read) => ({ topic: read.topic, partitions: [partition] })))
        } catch (err) {
          this.#logger.debug({ err, partition }, 'pausing after a read failed (the consumer stopped)')
        }
      }
      if (active.badRecord !== null) throw new CouponsError('AGGREGATOR_BAD_RECORD', active.badRecord)
      if (active.wrongPartition !== null) {
        throw new CouponsError('AGGREGATOR_WRONG_PARTITION',
          `${active.wrongPartition}: partition ${partition} holds codes that hash to another partition; the producer and the aggregator disagree on the partitioning`)
      }
      for (const target of active.targets.values()) {
        const count = counts.get(target.read.file)
        if (count !== undefined) {
          count.records = target.records
          count.codes = target.scanner.codes + target.packedCodes
        }
      }
    }
    for (const read of options.reads) {
      const count = counts.get(read.file)
      if (count === undefined) continue
      if (count.codes !== read.range.codes || count.records !== read.range.records) {
        throw new CouponsError('AGGREGATOR_COUNT_MISMATCH',
          `${read.file}: segment ${read.segmentId} partition ${partition} should hold ${read.range.codes} codes in ${read.range.records} records ` +
          `(manifest) but ${count.codes} codes in ${count.records} records were read from ${read.topic}`)
      }
    }
    return [...counts.values()]
  }
}

/** Adds one record of the segment to the read's state, in the segment's format. */
function addRecord (active: ActiveRead, target: Target, batch: Batch, message: KafkaMessage): void {
  const value = message.value as Buffer
  if (target.format === 'lines') {
    target.scanner.push(value, target.onCode)
    target.scanner.end(target.onCode)
    return
  }
  const record = `${target.read.file}: a record at offset ${message.offset} of ${batch.topic} partition ${batch.partition}`
  if (value.length % PACKED_CODE_BYTES !== 0) active.badRecord ??= `${record} has ${value.length} bytes, not a whole number of ${PACKED_CODE_BYTES}-byte codes`
  else if (target.format === 'packed') {
    if (addPacked(value, active.state, target.read.fileIndex, active.partition, active.partitions)) active.wrongPartition ??= target.read.file
  } else {
    if (!sampledInPartition(value, active.partition, active.partitions)) active.wrongPartition ??= target.read.file
    if (!active.state.addWords(value, target.read.fileIndex)) active.badRecord ??= `${record} has words whose file bits are not zero: not a \`words\` record`
  }
  target.packedCodes += Math.floor(value.length / PACKED_CODE_BYTES)
}

const CODE_HALF_LIMIT = 2 ** 30

/**
 * Adds the codes of one `packed` record to the state: two big-endian uint32 a code, no parsing.
 * Returns true when a code is not one of this partition (or not a packed code at all).
 */
function addPacked (value: Buffer, state: PartitionState, fileIndex: number, partition: number, partitions: number): boolean {
  let wrong = false
  const end = value.length - PACKED_CODE_BYTES
  for (let i = 0; i <= end; i += PACKED_CODE_BYTES) {
    const hi = ((value[i] << 24) | (value[i + 1] << 16) | (value[i + 2] << 8) | value[i + 3]) >>> 0
    const lo = ((value[i + 4] << 24) | (value[i + 5] << 16) | (value[i + 6] << 8) | value[i + 7]) >>> 0
    if (hi >= CODE_HALF_LIMIT || lo >= CODE_HALF_LIMIT || partitionOf(hi, lo, partitions) !== partition) wrong = true
    else state.add(hi, lo, fileIndex)
  }
  return wrong
}

/**
 * Whether the first and the last code of a `words` record hash to `partition`. The producer
 * routed every code by the hash; checking two per record, not every one, keeps the copy a block
 * copy, and still catches a producer that partitions otherwise (another hash or partition count
 * sends nearly every record's first code elsewhere). Bytes changed in transit are Kafka's CRC's job.
 */
function sampledInPartition (record: Buffer, partition: number, partitions: number): boolean {
  if (record.length === 0) return true
  for (const at of [0, record.length - PACKED_CODE_BYTES]) {
    const low = record.readUInt32LE(at)
    const high = record.readUInt32LE(at + 4)
    if (partitionOf(hiOfWord(high), loOfWord(high, low), partitions) !== partition) return false
  }
  return true
}

/** A range whose records were deleted or never written would make the reader wait forever. */
async function checkOffsetsExist (admin: Admin, partition: number, reads: SegmentRead[]): Promise<void> {
  for (const read of reads) {
    const offsets = await admin.fetchTopicOffsets(read.topic)
    const found = offsets.find((o) => o.partition === partition)
    const first = BigInt(read.range.firstOffset as string)
    const last = BigInt(read.range.lastOffset as string)
    if (found === undefined || BigInt(found.low) > first || BigInt(found.high) <= last) {
      throw new CouponsError('AGGREGATOR_RECORDS_MISSING',
        `${read.file}: segment ${read.segmentId} needs offsets ${first}..${last} of ${read.topic} partition ${partition}, ` +
        `but the partition holds ${found?.low ?? '?'}..${found === undefined ? '?' : BigInt(found.high) - 1n}`)
    }
  }
}
