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
  /**
   * `exact` (default): a topic with another count is refused (KAFKA_PARTITIONS_MISMATCH), for
   * topics whose count is part of their meaning (coupons.segments: one partition, one order).
   * `at-least`: a topic with fewer is grown to numPartitions (createPartitions), one with more is
   * accepted as it is (Kafka cannot shrink a topic): for the data topics, whose producer writes to
   * partitions 0..numPartitions-1 only, and topics whose producers spread over every partition.
   */
  partitions?: 'exact' | 'at-least'
  /** topic configs at creation; default: kept forever (the data topics and coupons.segments) */
  configEntries?: Array<{ name: string, value: string }>
}

export interface EnsureTopicsOptions {
  /**
   * Replicas of each topic created (KAFKA_REPLICATION_FACTOR); -1 (default): the broker's
   * default.replication.factor. N >= 1 also sets the topic's min.insync.replicas (minInsyncReplicas).
   */
  replicationFactor?: number
  /** how long to wait for leaders of new topics and partitions */
  timeoutMs?: number
}

/** The ensureTopics options of a process's config. */
export function topicOptions (config: Pick<Config, 'kafkaReplicationFactor'>): EnsureTopicsOptions {
  return { replicationFactor: config.kafkaReplicationFactor }
}

/**
 * min.insync.replicas for a replication factor: every replica but one must have a record before an
 * `acks: -1` produce is acknowledged (all our producers are idempotent, so they always ask for
 * acks from every in-sync replica), so one broker may be down (a rolling restart) without
 * stopping the pipeline, and an acknowledged record survives the loss of its leader. Never below 1.
 * With -1 the broker's own min.insync.replicas applies: who relies on the broker's default
 * replication factor configures the two together there.
 */
export function minInsyncReplicas (replicationFactor: number): number | null {
  return replicationFactor < 1 ? null : Math.max(1, replicationFactor - 1)
}

// Data is kept until the aggregator deletes what no current segment needs, never by age: a file
// not re-ingested for a month must still be replayable.
const KEEP_FOREVER = [
  { name: 'retention.ms', value: '-1' },
  { name: 'retention.bytes', value: '-1' }
]

function creationConfig (spec: TopicSpec, replicationFactor: number): Array<{ name: string, value: string }> {
  const entries = spec.configEntries ?? KEEP_FOREVER
  const minInsync = minInsyncReplicas(replicationFactor)
  if (minInsync === null || entries.some((entry) => entry.name === 'min.insync.replicas')) return entries
  return [...entries, { name: 'min.insync.replicas', value: String(minInsync) }]
}

/**
 * Creates the topics that do not exist yet, grows the `at-least` ones that have too few partitions,
 * waits until every partition of every topic has a leader (a topic that a concurrent caller has
 * just created may not have one yet, and producing to it fails with "This server does not host
 * this topic-partition"), and checks the partition counts: co-partitioning (DESIGN section 4)
 * breaks silently otherwise.
 */
export async function ensureTopics (admin: Admin, specs: TopicSpec[], options: EnsureTopicsOptions = {}): Promise<void> {
  const { replicationFactor = -1, timeoutMs = 30_000 } = options
  // Creating only the missing ones keeps KafkaJS from logging TOPIC_ALREADY_EXISTS as an error on
  // every production; a topic created meanwhile by a concurrent job is still fine (false, no throw).
  const existing = new Set(await admin.listTopics())
  const missing = specs.filter((spec) => !existing.has(spec.topic))
  if (missing.length > 0) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((spec) => ({ topic: spec.topic, numPartitions: spec.numPartitions, replicationFactor, configEntries: creationConfig(spec, replicationFactor) }))
      })
    } catch (err) {
      if (hasErrorType(err, 'INVALID_REPLICATION_FACTOR')) throw await replicationError(admin, replicationFactor, err)
      // KafkaJS's wait for leaders gives up when the broker's metadata does not list a topic
      // created a moment ago (several topics at once): the loop below waits for it instead.
      if (!isNotYetKnown(err)) throw err
    }
  }
  const deadline = Date.now() + timeoutMs
  const grown = new Set<string>()
  for (;;) {
    let topics: Awaited<ReturnType<Admin['fetchTopicMetadata']>>['topics']
    try {
      ({ topics } = await admin.fetchTopicMetadata({ topics: specs.map((spec) => spec.topic) }))
    } catch (err) {
      if (!isNotYetKnown(err) || Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    let notReady: string | null = null
    for (const spec of specs) {
      const found = topics.find((t) => t.name === spec.topic)
      if (found === undefined) throw new CouponsError('KAFKA_TOPIC_MISSING', `topic ${spec.topic} could not be created`, { retriable: true })
      const count = found.partitions.length
      if (spec.partitions === 'at-least' && count < spec.numPartitions) {
        // Grown once; after that the metadata may lag behind the new partitions for a moment.
        if (!grown.has(spec.topic)) {
          grown.add(spec.topic)
          await growTopic(admin, spec.topic, spec.numPartitions)
        }
        notReady = `${spec.topic} (${count} of ${spec.numPartitions} partitions so far)`
        continue
      }
      if (spec.partitions !== 'at-least' && count !== spec.numPartitions) {
        throw new CouponsError('KAFKA_PARTITIONS_MISMATCH',
          `topic ${spec.topic} has ${count} partitions but needs exactly ${spec.numPartitions}; ` +
          'delete the topic (or recreate it with that count)')
      }
      if (found.partitions.some((p) => p.leader < 0)) notReady = `${spec.topic} (partitions without a leader)`
    }
    if (notReady === null) return
    if (Date.now() > deadline) throw new CouponsError('KAFKA_NO_LEADER', `topic ${notReady} after ${timeoutMs} ms`, { retriable: true })
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Adds partitions up to `count`; a concurrent caller that grew it first is fine. */
async function growTopic (admin: Admin, topic: string, count: number): Promise<void> {
  try {
    await admin.createPartitions({ topicPartitions: [{ topic, count }] })
  } catch (err) {
    // INVALID_PARTITIONS: it already has `count` or more (another producer grew it meanwhile).
    if (!hasErrorType(err, 'INVALID_PARTITIONS')) throw err
  }
}

async function replicationError (admin: Admin, replicationFactor: number, cause: unknown): Promise<CouponsError> {
  const brokers = await admin.describeCluster().then(({ brokers }) => `${brokers.length}`, () => 'fewer')
  return new CouponsError('KAFKA_REPLICATION_INVALID',
    `KAFKA_REPLICATION_FACTOR is ${replicationFactor} but the Kafka cluster has ${brokers} broker(s); ` +
    'set it to at most the number of brokers, or -1 for the broker\'s default', { cause })
}

function hasErrorType (err: unknown, type: string): boolean {
  const { type: own, errors } = err as { type?: string, errors?: unknown[] }
  return own === type || (Array.isArray(errors) && errors.some((inner) => (inner as { type?: string }).type === type))
}

function isNotYetKnown (err: unknown): boolean {
  return (err as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION'
}
