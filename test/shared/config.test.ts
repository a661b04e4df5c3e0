import t from 'tap'
import { loadConfig } from '../../src/shared/config.js'
import type { ErrorCode } from '../../src/shared/errors.js'

t.test('defaults give a working local configuration', async (t) => {
  const config = loadConfig({})
  t.equal(config.port, 3000)
  t.same(config.kafkaBrokers, ['127.0.0.1:9092'])
  t.same(config.couponFiles, ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz'])
  t.equal(config.minFiles, 2)
  t.equal(config.redisPrefix, 'coupons:')
  t.equal(config.ingestCron, '0 3 * * *')
  t.equal(config.adminToken, undefined)
  t.equal(config.kafkaReplicationFactor, -1, 'the broker\'s default replication factor')
  t.equal(config.aggregatorDecideThreads, 2, 'one decide thread per core of a two-core host')
  t.equal(config.aggregatorStateMemoryBytes, 640 * 1024 * 1024, 'AGGREGATOR_STATE_MEMORY_MB in bytes')
})

t.test('values are coerced from strings and lists are split', async (t) => {
  const config = loadConfig({ PORT: '8080', KAFKA_BROKERS: 'a:1,b:2', KAFKA_PARTITIONS: '12', INGEST_WORKER: 'false', INGEST_CRON: 'off' })
  t.equal(config.port, 8080)
  t.same(config.kafkaBrokers, ['a:1', 'b:2'])
  t.equal(config.kafkaPartitions, 12)
  t.equal(loadConfig({ KAFKA_REPLICATION_FACTOR: '3' }).kafkaReplicationFactor, 3)
  t.equal(config.ingestWorker, false)
  t.equal(config.ingestCron, null, '"off" disables the daily run')
})

t.test('TRUST_PROXY takes a boolean or proxy addresses', async (t) => {
  t.equal(loadConfig({}).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true)
  t.equal(loadConfig({ TRUST_PROXY: '10.0.0.0/8,127.0.0.1' }).trustProxy, '10.0.0.0/8,127.0.0.1')
  t.throws(() => loadConfig({ TRUST_PROXY: 'everyone' }), /TRUST_PROXY/)
})

t.test('REDIS_CLUSTER_NODES names the seed nodes of a cluster; empty means one Redis', async (t) => {
  t.same(loadConfig({}).redisClusterNodes, [], 'standalone by default')
  t.same(loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,redis-b.internal:7001' }).redisClusterNodes,
    [{ host: '10.0.0.1', port: 7000 }, { host: 'redis-b.internal', port: 7001 }])
  t.equal(loadConfig({ REDIS_PREFIX: 'shop:{coupons}:' }).redisPrefix, 'shop:{coupons}:', 'a prefix may carry its own hash tag')
})

t.test('bad values fail with the variable name', async (t) => {
  const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ KAFKA_PARTITIONS: '0' }, /KAFKA_PARTITIONS/],
    [{ KAFKA_REPLICATION_FACTOR: '0' }, /KAFKA_REPLICATION_FACTOR/],
    [{ KAFKA_REPLICATION_FACTOR: '-2' }, /KAFKA_REPLICATION_FACTOR/],
    [{ REDIS_URL: 'localhost:6379' }, /REDIS_URL/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.1' }, /REDIS_CLUSTER_NODES/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.1:7000,' }, /REDIS_CLUSTER_NODES/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.1:0' }, /REDIS_CLUSTER_NODES/],
    [{ REDIS_PREFIX: 'a{b' }, /REDIS_PREFIX/],
    [{ REDIS_PREFIX: '{a}{b}' }, /REDIS_PREFIX/],
    [{ COUPON_FILES: '../etc/passwd' }, /COUPON_FILES/],
    [{ COUPON_FILES: 'a.gz,/abs/b.gz' }, /COUPON_FILES/],
    [{ COUPON_FILES: 'a.gz,a.gz' }, /COUPON_FILES/],
    [{ MIN_FILES: '4' }, /MIN_FILES/],
    [{ ADMIN_TOKEN: 'short' }, /ADMIN_TOKEN/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ AGGREGATOR_DECIDE_THREADS: '0' }, /AGGREGATOR_DECIDE_THREADS/],
    [{ AGGREGATOR_STATE_MEMORY_MB: '8' }, /AGGREGATOR_STATE_MEMORY_MB/]
  ]
  for (const [env, name] of cases) {
    t.throws(() => loadConfig(env), { code: 'CONFIG_INVALID' satisfies ErrorCode, message: name }, JSON.stringify(env))
  }
})
