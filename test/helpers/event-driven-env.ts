// Helpers for the event-driven flash-sale tests: a fresh PostgreSQL schema (postgres-env) and Kafka
// topic prefix per test (both removed afterwards), `coupons flash-sale` as a child process that can be SIGKILLed,
// a TCP proxy in front of PostgreSQL to cut it off, and a reader of a topic from its start.
import { once } from 'node:events'
import { createServer, connect, type Server, type Socket } from 'node:net'
import type { Kafka, KafkaMessage } from 'kafkajs'
import type { Pool } from 'pg'
import type { Test } from 'tap'
import type { Config } from '../../src/shared/config.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { spawnLogged, type LoggedChild } from './logged-child.js'
import { TEST_DATABASE_URL, testSchema } from './postgres-env.js'
import { deleteTopics, testConfig, testKafka, uniqueName } from './test-env.js'

export { waitFor }

/** `databaseUrl` with its host and port replaced (a proxy in front of the same server). */
export function throughProxy (databaseUrl: string, hostPort: string): string {
  const url = new URL(databaseUrl)
  url.host = hostPort
  return url.toString()
}

export interface FlashSaleEnv {
  config: Config
  /** the variables that give a child process the same config */
  env: NodeJS.ProcessEnv
  kafka: Kafka
  schema: string
  databaseUrl: string
  /** a pool on the test's schema, for arranging and checking rows */
  pool: Pool
  /** the same topics and schema with some variables changed (another INSTANCE_ID, a proxy's DATABASE_URL…) */
  configWith: (overrides: NodeJS.ProcessEnv) => Config
}

/** A config with its own topic prefix, consumer groups, instance id and PostgreSQL schema; cleaned up when the test ends. */
export async function flashSaleEnv (t: Test, label: string, overrides: NodeJS.ProcessEnv = {}): Promise<FlashSaleEnv> {
  const name = uniqueName(label)
  // Not migrated: the consumer migrates at start, like in production.
  const { pool, schema, databaseUrl } = await testSchema(t, { migrated: false })
  const env: NodeJS.ProcessEnv = {
    KAFKA_TOPIC_PREFIX: `${name}.`,
    KAFKA_PARTITIONS: '4',
    DATABASE_URL: databaseUrl,
    INSTANCE_ID: name,
    LOG_LEVEL: 'warn',
    INGEST_CRON: 'off',
    ...overrides
  }
  const config = testConfig(label, env)
  const kafka = testKafka(config)
  t.teardown(async () => {
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    await deleteGroups(kafka, name)
  })
  return {
    config,
    env: { KAFKA_BROKERS: config.kafkaBrokers.join(','), REDIS_URL: config.redisUrl, ...env, LOG_LEVEL: 'info' },
    kafka,
    schema,
    databaseUrl,
    pool,
    configWith: (more) => testConfig(label, { ...env, ...more })
  }
}

/** Deletes the consumer groups whose id contains `text` (the test's name): the flash-sale groups and the reply groups. */
async function deleteGroups (kafka: Kafka, text: string): Promise<void> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const { groups } = await admin.listGroups()
    const ids = groups.map((group) => group.groupId).filter((id) => id.includes(text))
    if (ids.length > 0) await admin.deleteGroups(ids).catch(() => {})
  } finally {
    await admin.disconnect()
  }
}

export type ChildRole = LoggedChild

/** `coupons <role>` as a child process with JSON logs on stdout; SIGKILLed at teardown if still running. */
export function spawnRole (t: Test, role: string, env: NodeJS.ProcessEnv): ChildRole {
  return spawnLogged(t, `coupons ${role}`, ['src/cli.ts', role], env)
}

/** A TCP proxy to PostgreSQL that a test can cut (every connection dropped, new ones refused) and restore. */
export class CuttableProxy {
  readonly #target: { host: string, port: number }
  readonly #sockets = new Set<Socket>()
  #server: Server | null = null
  port = 0

  constructor (targetUrl = TEST_DATABASE_URL) {
    const url = new URL(targetUrl)
    this.#target = { host: url.hostname, port: Number(url.port || 5432) }
  }

  get hostPort (): string { return `127.0.0.1:${this.port}` }

  async start (): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.#target)
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
        socket.on('error', () => { client.destroy(); upstream.destroy() })
      }
      client.pipe(upstream).pipe(client)
    })
    server.listen(this.port, '127.0.0.1')
    await once(server, 'listening')
    this.port = (server.address() as { port: number }).port
    this.#server = server
  }

  async cut (): Promise<void> {
    const server = this.#server
    this.#server = null
    for (const socket of this.#sockets) socket.destroy()
    if (server !== null) await new Promise((resolve) => server.close(resolve))
  }
}

/** Every message of a topic from its start, until `count` are read (or the timeout). */
export async function readTopic (kafka: Kafka, topic: string, count: number, timeoutMs = 60_000): Promise<KafkaMessage[]> {
  const groupId = uniqueName('reader')
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false })
  const messages: KafkaMessage[] = []
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({ autoCommit: false, eachMessage: async ({ message }) => { messages.push(message) } })
    await waitFor(`${count} messages in ${topic}`, async () => messages.length >= count, timeoutMs)
    return messages
  } finally {
    await consumer.disconnect()
    const admin = kafka.admin()
    await admin.connect()
    await admin.deleteGroups([groupId]).catch(() => {})
    await admin.disconnect()
  }
}
