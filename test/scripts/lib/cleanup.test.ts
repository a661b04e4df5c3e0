import { Redis } from 'ioredis'
import t from 'tap'
import { deleteRedisPrefix, deleteTopics } from '../../../scripts/lib/cleanup.js'
import { redisKeys } from '../../../src/shared/redis-keys.js'
import { testConfig, testKafka, uniqueName } from '../../helpers/test-env.js'

t.test('deleteRedisPrefix removes every key under the prefix, hash-tagged ones too, and nothing else', async (t) => {
  const { redisUrl } = testConfig('cleanup')
  const prefix = `${uniqueName('cleanup')}:`
  const neighbour = `${prefix.slice(0, -1)}-other:keep`
  const redis = new Redis(redisUrl)
  t.teardown(async () => { await redis.del(neighbour); redis.disconnect() })
  // More keys than one SCAN page, so the cursor loop is exercised.
  const pipeline = redis.pipeline()
  for (let i = 0; i < 2500; i++) pipeline.set(`${prefix}key:${i}`, '1')
  const keys = redisKeys(prefix)
  pipeline.sadd(keys.valid, 'HAPPYHRS')
  pipeline.set(`${keys.bullPrefix}:ingest-runs:id`, '1')
  pipeline.set(neighbour, '1')
  await pipeline.exec()
  t.equal(await redis.exists(keys.valid, `${keys.bullPrefix}:ingest-runs:id`), 2, 'the tagged keys exist before')

  await deleteRedisPrefix(redis, prefix)
  t.same(await redis.keys(`${prefix}*`), [], 'nothing left under the prefix')
  t.equal(await redis.exists(keys.valid, `${keys.bullPrefix}:ingest-runs:id`), 0, 'nor under its hash tags')
  t.equal(await redis.exists(neighbour), 1, 'a key outside the prefix stays')
})

t.test('deleteTopics removes the topics under the prefix and nothing else', async (t) => {
  const config = testConfig('cleanup')
  const kafka = testKafka(config)
  const outside = `${config.kafkaTopicPrefix.slice(0, -1)}-other`
  const admin = kafka.admin()
  await admin.connect()
  t.teardown(async () => {
    await admin.deleteTopics({ topics: [outside] }).catch(() => {})
    await admin.disconnect()
  })
  const mine = [`${config.kafkaTopicPrefix}a`, `${config.kafkaTopicPrefix}b`]
  await admin.createTopics({ topics: [...mine, outside].map((topic) => ({ topic, numPartitions: 1 })), waitForLeaders: true })

  await deleteTopics(kafka, config.kafkaTopicPrefix)
  const left = (await admin.listTopics()).filter((topic) => topic.startsWith(config.kafkaTopicPrefix.slice(0, -1)))
  t.same(left, [outside], 'only the topic outside the prefix is left')
})
