// The infrastructure the rest of the suite stands on: a real Kafka broker (produce, consume back
// through a consumer group) and a real Redis (a set round trip).
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import { deleteRedisPrefix, deleteTopics, testConfig, testKafka, uniqueName } from '../helpers/test-env.js'

t.test('records produced to a fresh topic come back through a consumer group', async (t) => {
  const config = testConfig('smoke')
  const kafka = testKafka(config)
  const topic = `${config.kafkaTopicPrefix}smoke`
  t.teardown(() => deleteTopics(kafka, config.kafkaTopicPrefix))

  const admin = kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })

  const producer = kafka.producer()
  await producer.connect()
  t.teardown(() => producer.disconnect())
  const sent = Array.from({ length: 30 }, () => randomUUID())
  await producer.send({ topic, acks: -1, messages: sent.map((value, i) => ({ value, partition: i % 3 })) })

  const consumer = kafka.consumer({ groupId: uniqueName('smoke-group') })
  await consumer.connect()
  t.teardown(() => consumer.disconnect())
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const received: string[] = []
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${received.length} of 30 records came back in 30 s`)), 30_000)
    consumer.run({
      eachMessage: async ({ message }) => {
        received.push(message.value!.toString())
        if (received.length === sent.length) { clearTimeout(timer); resolve() }
      }
    }).catch(reject)
  })
  t.same([...received].sort(), [...sent].sort())
})

t.test('a Redis set round-trips', async (t) => {
  const config = testConfig('smoke')
  const redis = new Redis(config.redisUrl)
  t.teardown(async () => { await deleteRedisPrefix(redis, config.redisPrefix); redis.disconnect() })
  const key = `${config.redisPrefix}set`
  await redis.sadd(key, 'OVER9000', 'HAPPYHRS')
  t.equal(await redis.sismember(key, 'OVER9000'), 1)
  t.equal(await redis.sismember(key, 'SUPER100'), 0)
  t.same((await redis.smembers(key)).sort(), ['HAPPYHRS', 'OVER9000'])
})
