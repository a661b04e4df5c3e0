import t from 'tap'
import { ensureTopics } from '../../src/shared/kafka.js'
import { isCouponsError } from '../../src/shared/errors.js'
import { deleteTopics, testConfig, testKafka } from '../helpers/test-env.js'

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

t.test('an existing topic with another partition count is refused with a clear error', async (t) => {
  const config = testConfig('ensure-topics')
  const kafka = testKafka(config)
  t.teardown(() => deleteTopics(kafka, config.kafkaTopicPrefix))
  const admin = kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  const topic = `${config.kafkaTopicPrefix}data`
  await ensureTopics(admin, [{ topic, numPartitions: 3 }])
  const err = await ensureTopics(admin, [{ topic, numPartitions: 4 }]).catch((e: unknown) => e)
  t.ok(isCouponsError(err, 'KAFKA_PARTITIONS_MISMATCH'), 'KAFKA_PARTITIONS_MISMATCH')
  t.match((err as Error).message, /has 3 partitions but KAFKA_PARTITIONS is 4/)
})
