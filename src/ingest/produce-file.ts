// One production of one coupon file = one segment (DESIGN sections 2 and 4): stream the gz file,
// route every candidate code to its partition, send the packed records with acks from every
// replica, and only when every record is acknowledged append the segment manifest to
// `coupons.segments`. Any failure leaves records without a manifest, which the aggregator ignores.
import { join } from 'node:path'
import { Partitioners, type Kafka, type Producer, type RecordMetadata } from 'kafkajs'
import type { CodeScanner } from '../shared/code-rule.js'
import { isFileName, type Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { ensureTopics, topicNames, topicOptions } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import type { IngestProgress } from '../shared/run-contract.js'
import { SEGMENT_HEADER, encodeSegmentsRecord, newRunId, type PartitionRange, type RecordFormat, type SegmentManifest } from '../shared/segments.js'
import { PartitionRecords, RECORD_BYTES, type PackedRecord } from './partition-records.js'
import { openGzip, type GzipFile } from './read-gzip.js'

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
  /**
   * Awaited right before the manifest is written, after every record is acknowledged: throws when
   * this production no longer owns its work (a lost lock), and the segment is abandoned unpublished.
   */
  fence?: () => Promise<void>
  /** how the data records hold the codes (named in the manifest); default `words` */
  recordFormat?: RecordFormat
}

/**
 * Records are sent in requests of about this many bytes: with one request on the wire at a time
 * (see RecordSender), a request's round trip is paid once per SEND_BYTES, so they are large.
 */
const SEND_BYTES = 4 << 20
/**
 * ...but a request's records of one partition form one record batch, which must stay below Kafka's
 * 1 MB message.max.bytes whatever the spread of the codes: a request leaves as soon as one
 * partition has this many bytes waiting.
 */
const PARTITION_SEND_BYTES = 12 * RECORD_BYTES
const PROGRESS_INTERVAL_MS = 250

/** Streams one gz file into its topic; writes and returns the manifest only after every record is acked. */
export async function produceFile (options: ProduceFileOptions): Promise<SegmentManifest> {
  const { config, kafka, logger, file, runId, onProgress, signal } = options
  if (!isFileName(file)) {
    throw new CouponsError('INGEST_BAD_FILE_NAME', `${JSON.stringify(file)} is not a file name (names only, never paths)`)
  }
  const segmentId = options.segmentId ?? newRunId()
  const partitions = config.kafkaPartitions
  const topics = topicNames(config)
  const topic = topics.data(file)
  const log = logger.child({ file, runId, segmentId })

  // A missing or empty file fails before anything exists in Kafka, not even an empty topic.
  const gzip = await openGzip(file, options.path ?? join(config.couponDataDir, file), signal)

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  let sender: RecordSender | undefined
  try {
    await kafkaStep(file, topic, async () => {
      const admin = kafka.admin()
      await admin.connect()
      try {
        // At least `partitions`: a topic made for a smaller KAFKA_PARTITIONS grows; one made for a
        // larger keeps its extra partitions, which this production leaves empty (codes go to
        // hash mod `partitions` and the manifest lists exactly that many ranges).
        await ensureTopics(admin, [{ topic, numPartitions: partitions, partitions: 'at-least' }, { topic: topics.segments, numPartitions: 1 }], topicOptions(config))
      } finally {
        await admin.disconnect()
      }
      await producer.connect()
    })
    const records = new PartitionRecords(partitions, RECORD_BYTES, options.recordFormat ?? 'words')
    const { scanner } = records
    sender = new RecordSender(producer, file, topic, segmentId, partitions, (acked) => { records.release(acked) })
    const started = performance.now()
    onProgress?.(progressOf(gzip, scanner))
    let reportedAt = started
    for await (const chunk of gzip) {
      records.push(chunk)
      if (records.fullBytes >= SEND_BYTES || records.fullBytesMax >= PARTITION_SEND_BYTES) await sender.send(records.takeFull())
      if (performance.now() - reportedAt >= PROGRESS_INTERVAL_MS) {
        reportedAt = performance.now()
        onProgress?.(progressOf(gzip, scanner))
      }
    }
    records.end()
    await sender.send(records.takeAll())
    await sender.drain()

    const manifest: SegmentManifest = {
      type: 'segment',
      segmentId,
      runId,
      file,
      topic,
      fileBytes: gzip.bytesTotal,
      sha256: gzip.sha256(),
      fileIdentity: gzip.identity,
      recordFormat: records.format,
      lines: scanner.lines,
      codes: scanner.codes,
      producedAt: new Date().toISOString(),
      partitions: sender.ranges()
    }
    signal?.throwIfAborted()
    await options.fence?.()
    signal?.throwIfAborted()
    await kafkaStep(file, topics.segments, () => producer.send({
      topic: topics.segments,
      acks: -1,
      messages: [{ partition: 0, value: encodeSegmentsRecord(manifest) }]
    }))
    onProgress?.(progressOf(gzip, scanner))
    if (gzip.replacedDuringRead) log.warn({ fileIdentity: gzip.identity }, 'the file was replaced by rename during the read; the version opened was read and published')
    log.info({ codes: manifest.codes, lines: manifest.lines, fileBytes: gzip.bytesTotal, ms: Math.round(performance.now() - started) }, 'segment produced')
    return manifest
  } catch (err) {
    // Let the request still on the wire finish before the producer goes away; no manifest was written.
    await sender?.drain().catch(() => {})
    const error = isCouponsError(err) ? err : new CouponsError('INGEST_FAILED', `${file}: ${(err as Error).message}`, { cause: err, retriable: true })
    log.warn({ err: error }, 'segment abandoned, no manifest written')
    throw error
  } finally {
    await Promise.all([gzip.close(), producer.disconnect().catch(() => {})])
  }
}

function progressOf (gzip: GzipFile, scanner: CodeScanner): IngestProgress {
  const { bytesRead, bytesTotal } = gzip
  return { percent: Math.floor(bytesRead / bytesTotal * 1000) / 10, bytesRead, bytesTotal, lines: scanner.lines, codes: scanner.codes }
}

async function kafkaStep<T> (file: string, topic: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step()
  } catch (err) {
    if (isCouponsError(err)) throw err
    throw new CouponsError('INGEST_KAFKA_FAILED', `${file}: producing to ${topic} failed: ${(err as Error).message}`, { cause: err, retriable: true })
  }
}

/** What the broker acknowledged of one segment in one partition. */
interface AckedRange {
  first: bigint | null
  last: bigint | null
  records: number
  codes: number
}

/**
 * Sends produce requests with one request on the wire at a time: concurrent send() calls on an
 * idempotent KafkaJS producer can fail with OUT_OF_ORDER_SEQUENCE_NUMBER (tulios/kafkajs#598; seen
 * here too) or even lose records silently (tulios/kafkajs#1005), and memory stays bounded; requests
 * are large instead (SEND_BYTES). Reading and scanning the next request's codes still overlap
 * with the request in flight.
 *
 * It owns what the broker acknowledged: per partition the first and last offset, the records and
 * the codes of this segment, which are the manifest's ranges. Other productions may interleave in
 * the same offsets; the aggregator filters by the segment header.
 */
class RecordSender {
  readonly #producer: Producer
  readonly #file: string
  readonly #topic: string
  readonly #headers: Record<string, string>
  readonly #acked: AckedRange[]
  /** called with a request's records once the broker has acknowledged them */
  readonly #onAcked: (records: PackedRecord[]) => void
  /** the one request on the wire; its failure is thrown by the next send() or drain() */
  #inFlight: Promise<void> | null = null

  constructor (producer: Producer, file: string, topic: string, segmentId: string, partitions: number, onAcked: (records: PackedRecord[]) => void) {
    this.#onAcked = onAcked
    this.#producer = producer
    this.#file = file
    this.#topic = topic
    this.#headers = { [SEGMENT_HEADER]: segmentId }
    this.#acked = Array.from({ length: partitions }, () => ({ first: null, last: null, records: 0, codes: 0 }))
  }

  /** Waits for the request in flight, then puts this batch on the wire without waiting for its ack. */
  async send (batch: PackedRecord[]): Promise<void> {
    await this.drain()
    if (batch.length === 0) return
    const request = this.#request(batch)
    // Handled now so that a failure is not an unhandled rejection while the next chunk is read.
    request.catch(() => {})
    this.#inFlight = request
  }

  /** Waits for the request in flight; throws its failure. */
  async drain (): Promise<void> {
    const inFlight = this.#inFlight
    this.#inFlight = null
    await inFlight
  }

  ranges (): PartitionRange[] {
    return this.#acked.map(({ first, last, records, codes }, partition) => ({
      partition,
      firstOffset: first?.toString() ?? null,
      lastOffset: last?.toString() ?? null,
      records,
      codes
    }))
  }

  async #request (batch: PackedRecord[]): Promise<void> {
    let metadata: RecordMetadata[]
    try {
      metadata = await this.#producer.send({
        topic: this.#topic,
        acks: -1,
        messages: batch.map((record) => ({ partition: record.partition, value: record.value, headers: this.#headers }))
      })
    } catch (err) {
      throw new CouponsError('INGEST_KAFKA_FAILED', `${this.#file}: producing to ${this.#topic} failed: ${(err as Error).message}`, { cause: err, retriable: true })
    }
    // Written and acknowledged: nothing reads these records' buffers any more.
    this.#onAcked(batch)
    const sent = new Map<number, { records: number, codes: number }>()
    for (const record of batch) {
      const count = sent.get(record.partition) ?? { records: 0, codes: 0 }
      count.records++
      count.codes += record.codes
      sent.set(record.partition, count)
    }
    for (const { partition, baseOffset } of metadata) {
      const count = sent.get(partition)
      if (count === undefined || baseOffset === undefined) continue
      // A request's records for one partition form one batch, appended at consecutive offsets, and
      // with one request at a time each request lands after the previous one.
      const acked = this.#acked[partition]
      const first = BigInt(baseOffset)
      acked.first ??= first
      acked.last = first + BigInt(count.records - 1)
      acked.records += count.records
      acked.codes += count.codes
      sent.delete(partition)
    }
    if (sent.size > 0) {
      throw new CouponsError('INGEST_KAFKA_FAILED', `${this.#file}: the broker acknowledged no offset for partitions ${[...sent.keys()].join(', ')} of ${this.#topic}`, { retriable: true })
    }
  }
}
