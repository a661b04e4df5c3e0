// Real `coupons` role processes (api, aggregator, worker…) for one end-to-end test, started the way
// an operator would: their own Redis prefix, Kafka topic prefix, port and admin token. What they
// print is kept and shown when the test fails; when it ends they are stopped and everything they
// made (topics, keys, the data folder) is removed.
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import { startRole, type RoleProcess } from '../../scripts/lib/role-process.js'
import { loadConfig, type Config } from '../../src/shared/config.js'
import { freePort } from './api-env.js'
import { deleteRedisPrefix, deleteTopics, testKafka, uniqueName } from './test-env.js'

export interface RoleStack {
  env: NodeJS.ProcessEnv
  config: Config
  /** the api's address */
  base: string
  /** the admin routes' Authorization header */
  auth: { authorization: string }
  /** a client on the stack's Redis, for the test's own reads */
  redis: Redis
  /** starts a role; every role started is stopped when the test ends */
  start: (role: string) => RoleProcess
}

/** `dir` holds the coupon files and is removed at the end; `overrides` are added to the environment. */
export async function roleStack (t: Test, label: string, dir: string, overrides: NodeJS.ProcessEnv = {}): Promise<RoleStack> {
  const name = uniqueName(label)
  const token = randomBytes(24).toString('hex')
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    REDIS_PREFIX: `${name}:`,
    KAFKA_TOPIC_PREFIX: `${name}.`,
    KAFKA_PARTITIONS: '4',
    COUPON_DATA_DIR: dir,
    ADMIN_TOKEN: token,
    INGEST_CRON: 'off',
    RATE_LIMIT_MAX: '0',
    LOG_LEVEL: 'warn',
    ...overrides
  }
  const config = loadConfig(env)
  const redis = new Redis(config.redisUrl)
  const logs: string[] = []
  const roles: RoleProcess[] = []
  t.teardown(async () => {
    const codes = await Promise.all(roles.map((role) => role.stop()))
    if (t.passing() === false) t.comment(logs.join('').slice(-8000))
    t.comment(`processes exited with ${codes.join(', ')}`)
    await deleteTopics(testKafka(config), config.kafkaTopicPrefix)
    await deleteRedisPrefix(redis, config.redisPrefix)
    redis.disconnect()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    env,
    config,
    base: `http://127.0.0.1:${port}`,
    auth: { authorization: `Bearer ${token}` },
    redis,
    start (role) {
      const started = startRole(role, [], env, ['ignore', 'pipe', 'pipe'])
      for (const stream of [started.child.stdout!, started.child.stderr!]) stream.on('data', (chunk: Buffer) => logs.push(`[${role}] ${chunk.toString()}`))
      roles.push(started)
      return started
    }
  }
}
