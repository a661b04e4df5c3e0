// Looks up the manifest of one file in one run on `coupons.segments` (DESIGN section 4). A file job
// whose earlier attempt wrote its manifest, then lost its worker before the job completed, finds
// the manifest here and adopts it instead of producing the file a second time.
import { randomBytes } from 'node:crypto'
import type { Kafka } from 'kafkajs'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { topicNames } from '../shared/kafka.js'
import { decodeSegmentsRecord, type SegmentManifest } from '../shared/segments.js'

const LOOKUP_TIMEOUT_MS = 60_000

/**
 * The first manifest of `file` in run `runId` (the one the aggregator keeps), or null when the
 * topic holds none up to its current end. Reads the topic from its start with a throwaway consumer
 * group (the topic is small: a run record and a manifest per file and run), deleted afterwards.
 */
export async function findManifest (kafka: Kafka, config: Pick<Config, 'kafkaTopicPrefix'>, runId: string, file: string, signal?: AbortSignal): Promise<SegmentManifest | null> {
  const topic = topicNames(config).segments
  const admin = kafka.admin()
  const groupId = `coupons-manifest-lookup-${randomBytes(6).toString('hex')}`
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false })
  let joined = false
  try {
    await admin.connect()
    // The run record was appended before the run's jobs were added, so the topic exists.
    const [{ low, high }] = await admin.fetchTopicOffsets(topic)
    const end = BigInt(high)
    if (end <= BigInt(low)) return null
    await consumer.connect()
    joined = true
    await consumer.subscribe({ topic, fromBeginning: true })
    return await new Promise<SegmentManifest | null>((resolve, reject) => {
      let settled = false
      const settle = (value: SegmentManifest | null | Error): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        if (value instanceof Error) reject(value)
        else resolve(value)
      }
      const timer = setTimeout(() => { settle(new Error(`no end of ${topic} after ${LOOKUP_TIMEOUT_MS} ms`)) }, LOOKUP_TIMEOUT_MS)
      const onAbort = (): void => { settle(signal?.reason instanceof Error ? signal.reason : new Error('aborted')) }
      signal?.addEventListener('abort', onAbort, { once: true })
      if (signal?.aborted === true) onAbort()
      consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          if (settled) return
          let record
          try {
            record = decodeSegmentsRecord(message.value)
          } catch {
            record = null // the aggregator logs unreadable records; here they are simply not the one
          }
          if (record?.type === 'segment' && record.runId === runId && record.file === file) settle(record)
          else if (BigInt(message.offset) + 1n >= end) settle(null)
        }
      }).catch((err: unknown) => { settle(err instanceof Error ? err : new Error(String(err))) })
    })
  } catch (err) {
    if (isCouponsError(err)) throw err
    throw new CouponsError('INGEST_KAFKA_FAILED', `${file}: looking for run ${runId}'s manifest on ${topic} failed: ${(err as Error).message}`, { cause: err, retriable: true })
  } finally {
    if (joined) await consumer.disconnect().catch(() => {})
    await admin.deleteGroups([groupId]).catch(() => {})
    await admin.disconnect().catch(() => {})
  }
}
