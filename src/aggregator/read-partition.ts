// Reads partition p of every data topic, exactly the offset ranges of the current segments, into
// the partition state (DESIGN section 5). One short-lived consumer per partition, in a throwaway
// group whose assigner hands it only partition p of each topic: it seeks to each segment's first
// offset, keeps the records whose `segment` header is that segment, and stops at its last offset.
// The codes read are then checked against the manifest's counts: a producer bug, a deleted record
// or a wrong partition fails the run instead of publishing a wrong set. Records of the `packed`
// format are copied into the state 8 bytes a code; `lines` records (segments written before it) are
// scanned as text; any other format fails the run (src/shared/segments.ts).
import { randomBytes } from 'node:crypto'
import { AssignerProtocol, type Admin, type Kafka, type PartitionAssigner } from 'kafkajs'
import { CodeScanner, type OnCode } from '../shared/code-rule.js'
import { packHi, packLo, partitionOf } from '../shared/code-packing.js'
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

export interface ReadPartitionOptions {
  kafka: Kafka
  admin: Admin
  logger: Logger
  /** the run this read belongs to (named in the phase events) */
  runId: string
  partition: number
  partitions: number
  reads: SegmentRead[]
  state: PartitionState
  signal?: AbortSignal
}

export interface ReadCounts {
  file: string
  records: number
  codes: number
}

/** An assigner that gives this (only) member partition p of every subscribed topic. */
function onlyPartition (partition: number): PartitionAssigner {
  return () => ({
    name: 'CouponsAggregatorPartition',
    version: 0,
    async assign ({ members, topics }) {
      const assignment = Object.fromEntries(topics.map((topic) => [topic, [partition]]))
      return members.map(({ memberId }, i) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: i === 0 ? assignment : {}, userData: Buffer.alloc(0) })
      }))
    },
    protocol ({ topics }) {
      return { name: 'CouponsAggregatorPartition', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) }
    }
  })
}

interface Target {
  read: SegmentRead
  first: bigint
  last: bigint
  next: bigint
  format: RecordFormat
  scanner: CodeScanner
  onCode: OnCode
  records: number
  /** codes of `packed` records (the scanner counts those of `lines` records) */
  packedCodes: number
  done: boolean
}

function formatOf (read: SegmentRead): RecordFormat {
  const format = read.recordFormat ?? 'lines'
  if ((RECORD_FORMATS as readonly string[]).includes(format)) return format as RecordFormat
  throw new CouponsError('AGGREGATOR_RECORD_FORMAT',
    `${read.file}: segment ${read.segmentId} has records of format ${JSON.stringify(format)}, which this aggregator cannot read (it reads ${RECORD_FORMATS.join(', ')}); upgrade the aggregator`)
}

export async function readPartition (options: ReadPartitionOptions): Promise<ReadCounts[]> {
  const { kafka, admin, logger, runId, partition, partitions, state, signal } = options
  const reads = options.reads.filter((read) => read.range.firstOffset !== null && read.range.lastOffset !== null)
  const counts = new Map(options.reads.map((read) => [read.file, { file: read.file, records: 0, codes: 0 }]))
  if (reads.length > 0) {
    const formats = reads.map(formatOf)
    await checkOffsetsExist(admin, partition, reads)
    let wrongPartition: string | null = null
    let badRecord: string | null = null
    const targets = new Map<string, Target>(reads.map((read, i) => {
      const fileIndex = read.fileIndex
      const onCode: OnCode = (bytes, start, end) => {
        const hi = packHi(bytes, start, end)
        const lo = packLo(bytes, start, end)
        if (partitionOf(hi, lo, partitions) !== partition) wrongPartition ??= read.file
        state.add(hi, lo, fileIndex)
      }
      return [read.topic, {
        read,
        first: BigInt(read.range.firstOffset as string),
        last: BigInt(read.range.lastOffset as string),
        next: BigInt(read.range.firstOffset as string),
        format: formats[i],
        scanner: new CodeScanner(),
        onCode,
        records: 0,
        packedCodes: 0,
        done: false
      }]
    }))

    const groupId = `coupons-aggregator-read-${randomBytes(6).toString('hex')}`
    const consumer = kafka.consumer({
      groupId,
      partitionAssigners: [onlyPartition(partition)],
      maxBytesPerPartition: 8 << 20,
      maxBytes: 32 << 20,
      allowAutoTopicCreation: false
    })
    let remaining = targets.size
    let onAbort = (): void => {}
    try {
      await consumer.connect()
      await consumer.subscribe({ topics: [...targets.keys()], fromBeginning: true })
      await new Promise<void>((resolve, reject) => {
        onAbort = (): void => { reject(signal?.reason ?? new Error('aborted')) }
        signal?.addEventListener('abort', onAbort, { once: true })
        if (signal?.aborted === true) onAbort()
        consumer.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          eachBatch: async ({ batch, isRunning, isStale, resolveOffset }) => {
            const target = targets.get(batch.topic)
            if (target === undefined || target.done || batch.partition !== partition || !isRunning() || isStale()) return
            // The fetch position only moves past resolved offsets (nothing is ever committed).
            resolveOffset(batch.lastOffset())
            for (const message of batch.messages) {
              const offset = BigInt(message.offset)
              if (offset < target.next || offset > target.last) continue
              target.next = offset + 1n
              const header = message.headers?.[SEGMENT_HEADER]
              if (header !== undefined && header.toString() === target.read.segmentId && message.value !== null) {
                target.records++
                if (target.format === 'packed') {
                  const value = message.value
                  if (value.length % PACKED_CODE_BYTES !== 0) badRecord ??= `${target.read.file}: a record at offset ${message.offset} of ${batch.topic} partition ${partition} has ${value.length} bytes, not a whole number of ${PACKED_CODE_BYTES}-byte codes`
                  const wrong = addPacked(value, state, target.read.fileIndex, partition, partitions)
                  if (wrong) wrongPartition ??= target.read.file
                  target.packedCodes += Math.floor(value.length / PACKED_CODE_BYTES)
                } else {
                  target.scanner.push(message.value, target.onCode)
                  target.scanner.end(target.onCode)
                }
              }
              if (offset === target.last) {
                target.done = true
                if (--remaining === 0) resolve()
                break
              }
            }
            publishRunPhase({ phase: 'reading', runId, partition, file: target.read.file })
          }
        }).catch(reject)
        for (const target of targets.values()) consumer.seek({ topic: target.read.topic, partition, offset: target.first.toString() })
      })
    } finally {
      signal?.removeEventListener('abort', onAbort)
      await consumer.disconnect().catch((err: unknown) => { logger.warn({ err, partition }, 'disconnecting a reader failed') })
      await admin.deleteGroups([groupId]).catch(() => { /* an unused throwaway group expires by itself */ })
    }
    if (badRecord !== null) throw new CouponsError('AGGREGATOR_BAD_RECORD', badRecord)
    if (wrongPartition !== null) {
      throw new CouponsError('AGGREGATOR_WRONG_PARTITION',
        `${wrongPartition}: partition ${partition} holds codes that hash to another partition; the producer and the aggregator disagree on the partitioning`)
    }
    for (const target of targets.values()) {
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
