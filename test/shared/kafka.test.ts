import type { Admin, ConfigResourceTypes } from 'kafkajs'
import t, { type Test } from 'tap'
import { ensureTopics, minInsyncReplicas, topicOptions } from '../../src/shared/kafka.js'
import { isCouponsError } from '../../src/shared/errors.js'
import { deleteTopics, testConfig, testKafka } from '../helpers/test-env.js'

async function testAdmin (t: Test, label: string): Promise<{ admin: Admin, prefix: string }> {
  const config = testConfig(label)
  const kafka = testKafka(config)
  t.teardown(() => deleteTopics(kafka, config.kafkaTopicPrefix))
  const admin = kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  return { admin, prefix: config.kafkaTopicPrefix }
}

async function partitionCount (admin: Admin, topic: string): Promise<number> {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
  return topics[0].partitions.length
}

/** ConfigResourceTypes.TOPIC (KafkaJS's CommonJS export of the enum is not visible to ESM importers) */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes

async function topicConfig (admin: Admin, topic: string, name: string): Promise<{ value: string, isDefault: boolean }> {
  const { resources } = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: [name] }] })
  const entry = resources[0].configEntries.find((e) => e.configName === name)
  if (entry === undefined) throw new Error(`${topic} has no ${name}`)
  return { value: entry.configValue, isDefault: entry.isDefault }
}

t.test('concurrent callers on fresh topics can all produce at once afterwards', async (t) => {
  const config = testConfig('ensure-topics')
  const kafka = testKafka(config)
  t.teardown(() => deleteTopics(kafka, config.kafkaTopicPrefix))
  const specs = [{ topic: `${config.kafkaTopicPrefix}data`, numPartitions: 6 }, { topic: `${config.kafkaTopicPrefix}segments`, numPartitions: 1 }]

  await Promise.all([0, 1, 2].map(async (i) => {
    const admin = kafka.admin()
    const producer = kafka.producer({ allowAutoTopicCreation: false })
    await Promise.all([admin.connect(), producer.connect()])
    try {
      await ensureTopics(admin, specs)
      const acks = await producer.send({ topic: specs[0].topic, acks: -1, messages: Array.from({ length: 6 }, (_, partition) => ({ partition, value: `from caller ${i}` })) })
      t.equal(acks.length, 6, `caller ${i} wrote to all 6 partitions`)
    } finally {
      await Promise.all([admin.disconnect(), producer.disconnect()])
    }
  }))
})

t.test('an existing exact topic with another partition count is refused with a clear error', async (t) => {
  const { admin, prefix } = await testAdmin(t, 'ensure-topics')
  const topic = `${prefix}segments`
  await ensureTopics(admin, [{ topic, numPartitions: 1 }])
  const err = await ensureTopics(admin, [{ topic, numPartitions: 2 }]).catch((e: unknown) => e)
  t.ok(isCouponsError(err, 'KAFKA_PARTITIONS_MISMATCH'), 'KAFKA_PARTITIONS_MISMATCH')
  t.match((err as Error).message, /has 1 partitions but needs exactly 2/)
})

t.test('an at-least topic with fewer partitions is grown, and every new partition takes records at once', async (t) => {
  const { admin, prefix } = await testAdmin(t, 'ensure-topics')
  const topic = `${prefix}data`
  await ensureTopics(admin, [{ topic, numPartitions: 2, partitions: 'at-least' }])
  t.equal(await partitionCount(admin, topic), 2)
  // Two callers at once (two files' jobs share coupons.segments; here, one topic): neither fails.
  await Promise.all([0, 1].map(() => ensureTopics(admin, [{ topic, numPartitions: 4, partitions: 'at-least' }])))
  t.equal(await partitionCount(admin, topic), 4, 'grown to 4')
  const producer = testKafka(testConfig('ensure-topics')).producer({ allowAutoTopicCreation: false })
  await producer.connect()
  t.teardown(() => producer.disconnect())
  const acks = await producer.send({ topic, acks: -1, messages: [2, 3].map((partition) => ({ partition, value: 'x' })) })
  t.same(acks.map((ack) => ack.partition).sort(), [2, 3])
})

t.test('an at-least topic with more partitions is accepted as it is (Kafka cannot shrink it)', async (t) => {
  const { admin, prefix } = await testAdmin(t, 'ensure-topics')
  const topic = `${prefix}data`
  await ensureTopics(admin, [{ topic, numPartitions: 4 }])
  await ensureTopics(admin, [{ topic, numPartitions: 2, partitions: 'at-least' }])
  t.equal(await partitionCount(admin, topic), 4)
})

t.test('min.insync.replicas follows the replication factor: every replica but one, at least 1', async (t) => {
  t.equal(minInsyncReplicas(-1), null, 'the broker\'s default')
  t.equal(minInsyncReplicas(1), 1)
  t.equal(minInsyncReplicas(2), 1)
  t.equal(minInsyncReplicas(3), 2)
  t.equal(minInsyncReplicas(5), 4)
  t.same(topicOptions(testConfig('ensure-topics', { KAFKA_REPLICATION_FACTOR: '3' })), { replicationFactor: 3 })
  t.same(topicOptions(testConfig('ensure-topics')), { replicationFactor: -1 }, 'KAFKA_REPLICATION_FACTOR defaults to -1')
})

t.test('topics are created with the replication factor and its min.insync.replicas, beside their own configs', async (t) => {
  const { admin, prefix } = await testAdmin(t, 'ensure-topics')
  const explicit = `${prefix}explicit`
  const brokerDefault = `${prefix}broker-default`
  await ensureTopics(admin, [{ topic: explicit, numPartitions: 2 }], { replicationFactor: 1 })
  await ensureTopics(admin, [{ topic: brokerDefault, numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '60000' }] }])

  const { topics } = await admin.fetchTopicMetadata({ topics: [explicit] })
  t.ok(topics[0].partitions.every((p) => p.replicas.length === 1), 'one replica each')
  t.same(await topicConfig(admin, explicit, 'min.insync.replicas'), { value: '1', isDefault: false }, 'min.insync.replicas set on the topic')
  t.same(await topicConfig(admin, explicit, 'retention.ms'), { value: '-1', isDefault: false }, 'kept forever (the default configs) still')

  t.equal((await topicConfig(admin, brokerDefault, 'min.insync.replicas')).isDefault, true, 'with -1 the broker\'s min.insync.replicas applies')
  t.same(await topicConfig(admin, brokerDefault, 'retention.ms'), { value: '60000', isDefault: false }, 'the spec\'s own configs')
})

t.test('a replication factor above the number of brokers is refused naming KAFKA_REPLICATION_FACTOR', async (t) => {
  const { admin, prefix } = await testAdmin(t, 'ensure-topics')
  const { brokers } = await admin.describeCluster()
  const err = await ensureTopics(admin, [{ topic: `${prefix}data`, numPartitions: 1 }], { replicationFactor: brokers.length + 1 }).catch((e: unknown) => e)
  t.ok(isCouponsError(err, 'KAFKA_REPLICATION_INVALID'), `KAFKA_REPLICATION_INVALID (got ${String(err)})`)
  t.equal((err as { retriable?: boolean }).retriable, false, 'not retriable: only a config change helps')
  t.match((err as Error).message, `KAFKA_REPLICATION_FACTOR is ${brokers.length + 1} but the Kafka cluster has ${brokers.length} broker(s)`)
  t.same((await admin.listTopics()).filter((topic) => topic.startsWith(prefix)), [], 'no topic was created')
})
