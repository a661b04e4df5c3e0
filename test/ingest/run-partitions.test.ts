import { Redis } from 'ioredis'
import t from 'tap'
import { checkRunPartitions, isFullRun, livePartitions } from '../../src/ingest/run-partitions.js'
import { META, redisKeys } from '../../src/shared/redis-keys.js'
import { deleteRedisPrefix, testConfig } from '../helpers/test-env.js'

const config = { couponFiles: ['a.gz', 'b.gz', 'c.gz'], kafkaPartitions: 8 }

t.test('a full run has every configured file, in any order', async (t) => {
  t.ok(isFullRun(config, ['c.gz', 'a.gz', 'b.gz']))
  t.notOk(isFullRun(config, ['a.gz', 'b.gz']))
})

t.test('only a partial run under another partition count than the live set\'s is refused', async (t) => {
  t.doesNotThrow(() => checkRunPartitions(config, ['a.gz'], null), 'unknown live count: allowed')
  t.doesNotThrow(() => checkRunPartitions(config, ['a.gz'], 8), 'the same count: allowed')
  t.doesNotThrow(() => checkRunPartitions(config, ['b.gz', 'c.gz', 'a.gz'], 4), 'a full run: allowed, it re-partitions every file')
  t.throws(() => checkRunPartitions(config, ['a.gz', 'c.gz'], 4), {
    name: 'CouponsError',
    code: 'INGEST_PARTITIONS_CHANGED',
    retriable: false,
    message: 'KAFKA_PARTITIONS is 8 but the live set was built from segments with 4 partitions; run a full ingest (all files: a.gz, b.gz, c.gz) to re-partition, not only a.gz, c.gz'
  })
})

t.test('the live count is read from the meta hash; absent or unreadable is unknown', async (t) => {
  const { redisUrl, redisPrefix } = testConfig('run-partitions')
  const redis = new Redis(redisUrl)
  t.teardown(async () => { await deleteRedisPrefix(redis, redisPrefix); await redis.quit() })
  const meta = redisKeys(redisPrefix).meta
  t.equal(await livePartitions(redis, redisPrefix), null)
  await redis.hset(meta, META.partitions, '4')
  t.equal(await livePartitions(redis, redisPrefix), 4)
  await redis.hset(meta, META.partitions, 'four')
  t.equal(await livePartitions(redis, redisPrefix), null)
})
