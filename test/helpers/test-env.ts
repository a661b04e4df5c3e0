// Isolation for tests against the real Kafka and Redis: every test gets its own Redis prefix, topic
// prefix and consumer groups, and removes what it made.
import { randomBytes } from 'node:crypto'
import { Kafka, logLevel } from 'kafkajs'
import { pino } from 'pino'
import { loadConfig, type Config } from '../../src/shared/config.js'

// The clean-up is shared with bench/, so it lives in scripts/lib; tests keep importing it from here.
export { deleteRedisPrefix, deleteTopics } from '../../scripts/lib/cleanup.js'

/** For code under test that wants a logger and tests that want quiet. */
export const silentLogger = pino({ level: 'silent' })

export function uniqueName (label: string): string {
  return `test-${label}-${randomBytes(4).toString('hex')}`
}

/** A validated config whose Redis keys and Kafka topics belong to this test alone. */
export function testConfig (label: string, overrides: NodeJS.ProcessEnv = {}): Config {
  const name = uniqueName(label)
  const { REDIS_URL, KAFKA_BROKERS } = process.env
  return loadConfig({
    // Where the services are may come from the environment; nothing else does.
    ...(REDIS_URL !== undefined ? { REDIS_URL } : {}),
    ...(KAFKA_BROKERS !== undefined ? { KAFKA_BROKERS } : {}),
    REDIS_PREFIX: `${name}:`,
    KAFKA_TOPIC_PREFIX: `${name}.`,
    KAFKA_PARTITIONS: '4',
    LOG_LEVEL: 'warn',
    INGEST_CRON: 'off',
    ...overrides
  })
}

export function testKafka (config: Config): Kafka {
  return new Kafka({ clientId: 'test', brokers: config.kafkaBrokers, logLevel: logLevel.NOTHING })
}
