// One production of one coupon file = one segment (DESIGN sections 2 and 4): stream the gz file,
// route every candidate code to its partition, send the packed records with acks from every
// replica, and only when every record is acknowledged append the segment manifest to
// `coupons.segments`. Any failure leaves records without a manifest, which the aggregator ignores.
import { join } from 'node:path'
import { Partitioners, type Kafka, type Producer, type RecordMetadata } from 'kafkajs'
import { CodeScanner } from '../shared/code-rule.js'
import { isFileName, type Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { ensureTopics, topicNames } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import type { IngestProgress } from '../shared/run-contract.js'
import { SEGMENT_HEADER, encodeSegmentsRecord, newRunId, type PartitionRange, type SegmentManifest } from '../shared/segments.js'
import { PartitionRecords, type PackedRecord } from './partition-records.js'
import { fileSize, readGzip } from './read-gzip.js'

export type { IngestProgress }

export interface ProduceFileOptions {
  config: Config
  kafka: Kafka
  logger: Logger
  /** a name from config.couponFiles; topic = topicNames(config).data(file) */
  file: string
  /** default join(config.couponDataDir, file) */
  path?: string
  runId: string
  /** default: a fresh random id (a retried job = a fresh segment) */
  segmentId?: string
  /** a few times a second */
  onProgress?: (progress: IngestProgress) => void
  signal?: AbortSignal
}

/**
 * Records are sent in requests of about this many bytes. Below Kafka's 1 MB message.max.bytes even
 * when every record goes to one partition (one record batch per partition and request).
 */
const SEND_BYTES = 512 * 1024
/**
 * One produce request on the wire at a time: concurrent send() calls on an idempotent KafkaJS
 * producer can fail with OUT_OF_ORDER_SEQUENCE_NUMBER (tulios/kafkajs#598; seen here too). Reading
 * and scanning the next request's codes still overlap with the request in flight.
 */
const MAX_REQUESTS_IN_FLIGHT = 1
const PROGRESS_INTERVAL_MS = 250

/** A fresh segment id: time-sortable like run ids, random against collisions. */
export function newSegmentId (): string {
  return newRunId()
}

/** Streams one gz file into its topic; writes and returns the manifest only after every record is acked. */
export async function produceFile (options: ProduceFileOptions): Promise<SegmentManifest> {
  const { config, kafka, logger, file, runId, onProgress, signal } = options
  if (!isFileName(file)) {
    throw new CouponsError('INGEST_BAD_FILE_NAME', `${JSON.stringify(file)} is not a file name (names only, never paths)`)
  }
  const path = options.path ?? join(config.couponDataDir, file)
  const segmentId = options.segmentId ?? newSegmentId()
  const partitions = config.kafkaPartitions
  const topics = topicNames(config)
  const topic = topics.data(file)
  const log = logger.child({ file, runId, segmentId })

  // A missing file fails before anything exists in Kafka, not even an empty topic.
  await fileSize(file, path)

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  let sender: RecordSender | undefined
  try {
    await kafkaStep(file, topic, async () => {
      const admin = kafka.admin()
      await admin.connect()
      try {
        await ensureTopics(admin, [{ topic, numPartitions: partitions }, { topic: topics.segments, numPartitions: 1 }])
      } finally {
        await admin.disconnect()
      }
      await producer.connect()
    })
    sender = new RecordSender(producer, file, topic, segmentId, partitions)
    const records = new PartitionRecords(partitions)
    const scanner = new CodeScanner()
    const progress: IngestProgress = { percent: 0, bytesRead: 0, bytesTotal: 0, lines: 0, codes: 0 }
    let reportedAt = 0
    const report = (force: boolean): void => {
      if (onProgress === undefined) return
      const now = performance.now()
      if (!force && now - reportedAt < PROGRESS_INTERVAL_MS) return
      reportedAt = now
      progress.lines = scanner.lines
      progress.codes = scanner.codes
      progress.percent = progress.bytesTotal === 0 ? 100 : Math.floor(progress.bytesRead / progress.bytesTotal * 1000) / 10
      onProgress({ ...progress })
    }
    const started = performance.now()
    const activeSender = sender
    const { bytesTotal, sha256 } = await readGzip({
      file,
      path,
      signal,
      onOpen: (total) => { progress.bytesTotal = total; report(true) },
      onCompressed: (read) => { progress.bytesRead = read },
      onChunk: async (chunk) => {
        scanner.push(chunk, records.onCode)
        if (records.fullBytes >= SEND_BYTES) await activeSender.send(records.takeFull())
        report(false)
      }
    })
    scanner.end(records.onCode)
    await sender.send(records.takeAll())
    await sender.drain()

    const manifest: SegmentManifest = {
      type: 'segment',
      segmentId,
      runId,
      file,
      topic,
      fileBytes: bytesTotal,
      sha256,
      lines: scanner.lines,
      codes: scanner.codes,
      producedAt: new Date().toISOString(),
      partitions: sender.ranges(records.codes)
    }
    signal?.throwIfAborted()
    await kafkaStep(file, topics.segments, () => producer.send({
      topic: topics.segments,
      acks: -1,
      messages: [{ partition: 0, value: encodeSegmentsRecord(manifest) }]
    }))
    report(true)
    log.info({ codes: manifest.codes, lines: manifest.lines, fileBytes: bytesTotal, ms: Math.round(performance.now() - started) }, 'segment produced')
    return manifest
  } catch (err) {
    // Let the sends still on the wire finish before the producer goes away; no manifest was written.
    await sender?.settle()
    const error = isCouponsError(err) ? err : new CouponsError('INGEST_FAILED', `${file}: ${(err as Error).message}`, { cause: err, retriable: true })
    log.warn({ err: error }, 'segment abandoned, no manifest written')
    throw error
  } finally {
    await producer.disconnect().catch(() => {})
  }
}

async function kafkaStep<T> (file: string, topic: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (err) {
    if (isCouponsError(err)) throw err
    throw new CouponsError('INGEST_KAFKA_FAILED', `${file}: producing to ${topic} failed: ${(err as Error).message}`, { cause: err, retriable: true })
  }
}

/**
 * Sends produce requests (MAX_REQUESTS_IN_FLIGHT at a time, so memory is bounded) and records
 * the offsets they were written at: per partition the lowest and highest offset of this segment's records. Other
 * productions may interleave in the same range; the aggregator filters by the segment header.
 */
class RecordSender {
  readonly #producer: Producer
  readonly #file: string
  readonly #topic: string
  readonly #headers: Record<string, string>
  readonly #first: Array<bigint | null>
  readonly #last: Array<bigint | null>
  readonly #records: Float64Array
  readonly #pending = new Set<Promise<void>>()
  #error: CouponsError | null = null

  constructor (producer: Producer, file: string, topic: string, segmentId: string, partitions: number) {
    this.#producer = producer
    this.#file = file
    this.#topic = topic
    this.#headers = { [SEGMENT_HEADER]: segmentId }
    this.#first = new Array(partitions).fill(null)
    this.#last = new Array(partitions).fill(null)
    this.#records = new Float64Array(partitions)
  }

  async send (batch: PackedRecord[]): Promise<void> {
    if (batch.length === 0) return
    while (this.#pending.size >= MAX_REQUESTS_IN_FLIGHT && this.#error === null) await Promise.race(this.#pending)
    if (this.#error !== null) throw this.#error
    const counts = new Map<number, number>()
    for (const record of batch) counts.set(record.partition, (counts.get(record.partition) ?? 0) + 1)
    const sent: Promise<void> = this.#producer.send({
      topic: this.#topic,
      acks: -1,
      messages: batch.map((record) => ({ partition: record.partition, value: record.value, headers: this.#headers }))
    }).then((metadata) => this.#acknowledged(metadata, counts), (err: Error) => {
      this.#error ??= new CouponsError('INGEST_KAFKA_FAILED', `${this.#file}: producing to ${this.#topic} failed: ${err.message}`, { cause: err, retriable: true })
    }).finally(() => {
      this.#pending.delete(sent)
    })
    this.#pending.add(sent)
  }

  /** Waits for every request; throws the first failure. */
  async drain (): Promise<void> {
    await this.settle()
    if (this.#error !== null) throw this.#error
  }

  async settle (): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending)
  }

  ranges (codes: Float64Array): PartitionRange[] {
    return Array.from(this.#records, (records, partition) => ({
      partition,
      firstOffset: this.#first[partition]?.toString() ?? null,
      lastOffset: this.#last[partition]?.toString() ?? null,
      records,
      codes: codes[partition]
    }))
  }

  #acknowledged (metadata: RecordMetadata[], counts: Map<number, number>): void {
    for (const { partition, baseOffset } of metadata) {
      const count = counts.get(partition)
      if (count === undefined || baseOffset === undefined) continue
      // A request's records for one partition form one batch, appended at consecutive offsets.
      const first = BigInt(baseOffset)
      const last = first + BigInt(count - 1)
      const seenFirst = this.#first[partition]
      const seenLast = this.#last[partition]
      if (seenFirst === null || first < seenFirst) this.#first[partition] = first
      if (seenLast === null || last > seenLast) this.#last[partition] = last
      this.#records[partition] += count
      counts.delete(partition)
    }
    if (counts.size > 0) {
      this.#error ??= new CouponsError('INGEST_KAFKA_FAILED', `${this.#file}: the broker acknowledged no offset for partitions ${[...counts.keys()].join(', ')} of ${this.#topic}`, { retriable: true })
    }
  }
}
