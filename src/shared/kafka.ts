// Kafka clients and topics shared by the ingest (producer) and the aggregator (consumer).
import { Kafka, type Admin } from 'kafkajs'
import type { Config } from './config.js'
import { CouponsError } from './errors.js'
import { kafkaLogCreator, kafkaLogLevel, type Logger } from './logger.js'

/** Run records and segment manifests (DESIGN section 4); one partition, so one total order. */
export const SEGMENTS_TOPIC = 'coupons.segments'

export interface TopicNames {
  /** the data topic of a coupon file: named exactly after the file (plus KAFKA_TOPIC_PREFIX) */
  data: (file: string) => string
  segments: string
}

export function topicNames (config: Pick<Config, 'kafkaTopicPrefix'>): TopicNames {
  const prefix = config.kafkaTopicPrefix
  return {
    data: (file) => `${prefix}${file}`,
    segments: `${prefix}${SEGMENTS_TOPIC}`
  }
}

export function createKafka (config: Pick<Config, 'kafkaBrokers' | 'logLevel'>, logger: Logger, clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: config.kafkaBrokers,
    logLevel: kafkaLogLevel(config.logLevel),
    logCreator: kafkaLogCreator(logger),
    connectionTimeout: 3000,
    // ~30 s of retries before an operation gives up: long enough for a broker restart, short
    // enough that a job fails (and BullMQ retries it) instead of hanging.
    retry: { initialRetryTime: 300, retries: 8, maxRetryTime: 5000 }
  })
}

export interface TopicSpec {
  topic: string
  numPartitions: number
  /** topic configs at creation; default: kept forever (the data topics and coupons.segments) */
  configEntries?: Array<{ name: string, value: string }>
}

// Data is kept until the aggregator deletes what no current segment needs, never by age: a file
// not re-ingested for a month must still be replayable.
const KEEP_FOREVER = [
  { name: 'retention.ms', value: '-1' },
  { name: 'retention.bytes', value: '-1' }
]

/**
 * Creates the topics that do not exist yet, waits until every partition of every topic has a
 * leader (a topic that a concurrent caller has just created may not have one yet, and producing to
 * it fails with "This server does not host this topic-partition"), and checks the partition
 * counts: co-partitioning (DESIGN section 4) breaks silently otherwise.
 */
export async function ensureTopics (admin: Admin, specs: TopicSpec[], timeoutMs = 30_000): Promise<void> {
  // Creating only the missing ones keeps KafkaJS from logging TOPIC_ALREADY_EXISTS as an error on
  // every production; a topic created meanwhile by a concurrent job is still fine (false, no throw).
  const existing = new Set(await admin.listTopics())
  const missing = specs.filter((spec) => !existing.has(spec.topic))
  if (missing.length > 0) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map(({ topic, numPartitions, configEntries }) => ({ topic, numPartitions, replicationFactor: -1, configEntries: configEntries ?? KEEP_FOREVER }))
      })
    } catch (err) {
      // KafkaJS's wait for leaders gives up when the broker's metadata does not list a topic
      // created a moment ago (several topics at once): the loop below waits for it instead.
      if (!isNotYetKnown(err)) throw err
    }
  }
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let topics: Awaited<ReturnType<Admin['fetchTopicMetadata']>>['topics']
    try {
      ({ topics } = await admin.fetchTopicMetadata({ topics: specs.map((spec) => spec.topic) }))
    } catch (err) {
      if (!isNotYetKnown(err) || Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    let leaderless: string | null = null
    for (const spec of specs) {
      const found = topics.find((t) => t.name === spec.topic)
      if (found === undefined) throw new CouponsError('KAFKA_TOPIC_MISSING', `topic ${spec.topic} could not be created`, { retriable: true })
      if (found.partitions.length !== spec.numPartitions) {
        throw new CouponsError('KAFKA_PARTITIONS_MISMATCH',
          `topic ${spec.topic} has ${found.partitions.length} partitions but KAFKA_PARTITIONS is ${spec.numPartitions}; ` +
          'delete the topic or set KAFKA_PARTITIONS to match')
      }
      if (found.partitions.some((p) => p.leader < 0)) leaderless = spec.topic
    }
    if (leaderless === null) return
    if (Date.now() > deadline) throw new CouponsError('KAFKA_NO_LEADER', `topic ${leaderless} has partitions without a leader after ${timeoutMs} ms`, { retriable: true })
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function isNotYetKnown (err: unknown): boolean {
  return (err as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION'
}
