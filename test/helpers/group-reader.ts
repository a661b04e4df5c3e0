// A PartitionReader on a real group consumer, wired as the aggregator wires it (src/aggregator/
// aggregator.ts): a consumer in a group of its own, given its partitions by the co-partitioned
// assigner, nothing committed, batches handed to the reader, and every data partition paused from
// the moment it is assigned until a read resumes it. It is the only member, so it owns every
// partition of the topics once the group has joined.
import type { Admin, Consumer, Kafka, TopicPartitions } from 'kafkajs'
import type { Test } from 'tap'
import { coPartitionedAssigner } from '../../src/aggregator/co-partition-assigner.js'
import { PartitionReader } from '../../src/aggregator/partition-reader.js'
import { silentLogger, uniqueName } from './test-env.js'

export interface GroupReader {
  reader: PartitionReader
  consumer: Consumer
  admin: Admin
}

export interface GroupReaderOptions {
  /** the data topics; they must exist */
  topics: string[]
  /** coupons.segments (with its prefix): the assigner leaves it out of the data topics */
  segmentsTopic: string
  /** KafkaJS's per-partition fetch limit; a tiny one makes every fetch bring one record batch */
  maxBytesPerPartition?: number
}

export async function startGroupReader (t: Test, kafka: Kafka, options: GroupReaderOptions): Promise<GroupReader> {
  const groupId = uniqueName('reader-group')
  const admin = kafka.admin()
  await admin.connect()
  const consumer = kafka.consumer({
    groupId,
    partitionAssigners: [coPartitionedAssigner(options.segmentsTopic)],
    maxWaitTimeInMs: 250,
    allowAutoTopicCreation: false,
    ...(options.maxBytesPerPartition === undefined ? {} : { maxBytesPerPartition: options.maxBytesPerPartition })
  })
  const reader = new PartitionReader(consumer, admin, silentLogger)
  t.teardown(async () => {
    await consumer.disconnect()
    await admin.deleteGroups([groupId]).catch(() => {})
    await admin.disconnect()
  })
  const joined = new Promise<void>((resolve) => {
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const paused: TopicPartitions[] = []
      for (const topic of options.topics) {
        const partitions = payload.memberAssignment[topic] ?? []
        // Explicit partitions: KafkaJS forgets a whole-topic pause as soon as one partition is paused.
        if (partitions.length > 0) paused.push({ topic, partitions })
      }
      consumer.pause(paused)
      if (options.topics.every((topic) => (payload.memberAssignment[topic] ?? []).length > 0)) resolve()
    })
  })
  await consumer.connect()
  await consumer.subscribe({ topics: options.topics, fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
      if (!isRunning() || isStale()) return
      reader.onBatch(batch, resolveOffset)
    }
  })
  // A fresh group waits out the broker's initial rebalance delay (3 s by default) before it joins.
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`group ${groupId} did not join with every partition of ${options.topics.join(', ')} within 60 s`)) }, 60_000)
  })
  try {
    await Promise.race([joined, timeout])
  } finally {
    clearTimeout(timer)
  }
  return { reader, consumer, admin }
}

/** Whether the consumer has `partition` of `topic` paused now. */
export function isPaused (consumer: Consumer, topic: string, partition: number): boolean {
  return consumer.paused().some((paused) => paused.topic === topic && paused.partitions.includes(partition))
}
