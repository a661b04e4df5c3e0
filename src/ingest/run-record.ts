// Run records (DESIGN section 4): one admin, scheduled or CLI request for a set of files, appended
// to `coupons.segments` before any of its files is produced, so the aggregator knows which
// segments make a run complete.
import { Partitioners, type Kafka } from 'kafkajs'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { ensureTopics, topicNames, topicOptions } from '../shared/kafka.js'
import { encodeSegmentsRecord, type SegmentsRecord } from '../shared/segments.js'

/**
 * Ensures topicNames(config).segments exists (1 partition) and appends one record to it (a run
 * record; tests also append hand-made manifests) with its own short-lived idempotent producer.
 */
export async function publishRunRecord (kafka: Kafka, config: Config, record: SegmentsRecord): Promise<void> {
  const topic = topicNames(config).segments
  const admin = kafka.admin()
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  try {
    await admin.connect()
    await ensureTopics(admin, [{ topic, numPartitions: 1 }], topicOptions(config))
    await producer.connect()
    await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: encodeSegmentsRecord(record) }] })
  } catch (err) {
    if (isCouponsError(err)) throw err
    throw new CouponsError('KAFKA_SEGMENTS_WRITE_FAILED', `could not append a ${record.type} record to ${topic}: ${(err as Error).message}`, { cause: err, retriable: true })
  } finally {
    await Promise.allSettled([producer.disconnect(), admin.disconnect()])
  }
}
