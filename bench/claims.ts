// `npm run bench:claims -- [--claims 20000] [--stock 5000] [--connections 100] [--targets event-driven,direct,ceiling]`: a burst of
// flash-sale claims over HTTP, each from a distinct user, against three targets in the same run:
// the real api in event-driven mode (with one `coupons flash-sale` consumer process), the real api
// in direct mode, and a bare Fastify route answering a constant (the ceiling). Each api target
// gets its own coupon with `--stock` units on a fresh PostgreSQL schema and topic prefix. Prints
// claims/s, p50, p99 and errors (anything but 200 and 409) for each, then checks the rows: as many
// claims as stock, nobody twice, nothing left.
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { Kafka, logLevel } from 'kafkajs'
import { escapeIdentifier, Pool } from 'pg'
import { startApi } from '../src/api/server.js'
import { loadConfig } from '../src/shared/config.js'
import { createLogger } from '../src/shared/logger.js'
import { startRole } from '../scripts/lib/role-process.js'
import { waitFor } from '../scripts/lib/wait-for.js'
import { deleteRedisPrefix, deleteTopics } from '../scripts/lib/cleanup.js'
import { startServeChild, stopChild } from './lib/serve-child.js'

type Target = 'event-driven' | 'direct' | 'ceiling'

/** The environment of one benchmark run: its own Redis prefix, topic prefix and schema. */
function benchEnv (run: string, schemaUrl: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_PREFIX: `${run}:`,
    KAFKA_TOPIC_PREFIX: `${run}.`,
    DATABASE_URL: schemaUrl,
    INSTANCE_ID: run,
    PORT: '0',
    HOST: '127.0.0.1',
    RATE_LIMIT_MAX: '0',
    INGEST_WORKER: 'false',
    INGEST_CRON: 'off',
    LOG_LEVEL: 'warn'
  }
}

/** Child mode: serve one target, print its URL on stdout, run until SIGTERM. */
const startChild = async (target: Target, env: NodeJS.ProcessEnv) => startServeChild(fileURLToPath(import.meta.url), ['--serve', target], env)

async function serve (target: Target): Promise<void> {
  if (target === 'ceiling') {
    const app = Fastify()
    app.post('/api/coupons/claim', async (request) => request.body)
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    process.once('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
    console.log(url)
    return
  }
  const config = loadConfig({ ...process.env, EVENT_DRIVEN_ENABLED: String(target === 'event-driven') })
  const server = await startApi({ config, logger: createLogger('warn', 'api') })
  process.once('SIGTERM', () => { server.close().then(() => process.exit(0), () => process.exit(1)) })
  console.log(server.url)
}

/** `claims` POSTs, each from a new user, `connections` at a time. */
async function burst (url: string, coupon: string, claims: number, connections: number): Promise<autocannon.Result> {
  let next = 0
  return await autocannon({
    url,
    connections,
    amount: claims,
    timeout: 30,
    requests: [{
      method: 'POST',
      path: '/api/coupons/claim',
      headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: JSON.stringify({ user_id: `user_${coupon}_${next++}`, coupon_name: coupon }) })
    }]
  })
}

async function createCoupon (url: string, name: string, amount: number): Promise<void> {
  // The event-driven api answers once its consumer has joined the group: retry until 201.
  await waitFor(`coupon ${name} created`, async () => {
    const response = await fetch(`${url}/api/coupons`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, amount }) })
    return response.status === 201
  }, 60_000, 500)
}

interface Line { label: string, result: autocannon.Result }

/** Over the whole burst, first request to last answer (autocannon's `duration` is whole seconds). */
function claimsPerSecond (result: autocannon.Result): number {
  return result.requests.total / ((new Date(result.finish).getTime() - new Date(result.start).getTime()) / 1000)
}

function summary ({ label, result }: Line): string {
  const statuses = Object.entries(result.statusCodeStats ?? {}).map(([status, { count }]) => `${status}: ${count}`).join(', ')
  const failed = Object.entries(result.statusCodeStats ?? {}).filter(([status]) => status !== '200' && status !== '409').reduce((sum, [, stat]) => sum + (stat?.count ?? 0), 0)
  const rate = claimsPerSecond(result)
  return `${label.padEnd(13)} ${Math.round(rate).toString().padStart(7)} claims/s   p50 ${result.latency.p50} ms   p99 ${result.latency.p99} ms   errors ${result.errors + failed}   timeouts ${result.timeouts}   (${statuses})`
}

async function checkRows (pool: Pool, coupon: string, stock: number, claims: number): Promise<string> {
  const { rows: [row] } = await pool.query<{ remaining: number, claims: string, users: string }>(
    `SELECT c.remaining_amount AS remaining, count(cl.*) AS claims, count(DISTINCT cl.user_id) AS users
     FROM coupons c LEFT JOIN claims cl ON cl.coupon_name = c.name WHERE c.name = $1 GROUP BY c.remaining_amount`, [coupon])
  const expected = Math.min(stock, claims)
  const ok = Number(row.claims) === expected && Number(row.users) === expected && row.remaining === stock - expected
  return `${ok ? 'ok  ' : 'FAIL'} ${coupon}: ${row.claims} claims by ${row.users} users, ${row.remaining} left (expected ${expected} claims, ${stock - expected} left)`
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      claims: { type: 'string', default: '20000' },
      stock: { type: 'string', default: '5000' },
      connections: { type: 'string', default: '100' },
      targets: { type: 'string', default: 'event-driven,direct,ceiling' }
    }
  })
  if (values.serve !== undefined) return serve(values.serve as Target)

  const claims = Number(values.claims)
  const stock = Number(values.stock)
  const connections = Number(values.connections)
  const targets = values.targets.split(',')
  const run = `bench-claims-${randomBytes(4).toString('hex')}`
  const schema = run.replaceAll('-', '_')
  const base = loadConfig(process.env)
  const admin = new Pool({ connectionString: base.databaseUrl, max: 1 })
  await admin.query(`CREATE SCHEMA ${escapeIdentifier(schema)}`)
  const schemaUrl = new URL(base.databaseUrl)
  schemaUrl.searchParams.set('options', `-c search_path=${schema}`)
  const env = benchEnv(run, schemaUrl.toString())
  const config = loadConfig(env)
  const pool = new Pool({ connectionString: schemaUrl.toString(), max: 1 })
  const children: ChildProcess[] = []
  const consumer = startRole('flash-sale', [], env, ['ignore', 'ignore', 'inherit'])
  const lines: Line[] = []
  const checks: string[] = []
  try {
    console.log(`bench:claims  ${claims} claims from distinct users per target, stock ${stock}, ${connections} connections, Kafka ${config.kafkaBrokers.join(',')} (${config.kafkaPartitions} partitions), ${base.databaseUrl.replace(/\/\/[^@]*@/, '//')}`)
    for (const target of (['event-driven', 'direct'] as const).filter((target) => targets.includes(target))) {
      const api = await startChild(target, env)
      children.push(api.child)
      const coupon = `BENCH_${target === 'direct' ? 'DIRECT' : 'EVENTS'}`
      await createCoupon(api.url, `${coupon}_WARM`, 1000)
      await burst(api.url, `${coupon}_WARM`, 2000, connections)
      await createCoupon(api.url, coupon, stock)
      lines.push({ label: target, result: await burst(api.url, coupon, claims, connections) })
      // Event-driven: a request that timed out may still be applied; wait until the consumer is done.
      await waitFor(`the ${coupon} claims to settle`, async () => {
        const { rows: [row] } = await pool.query<{ remaining: number }>('SELECT remaining_amount AS remaining FROM coupons WHERE name = $1', [coupon])
        return row.remaining === Math.max(0, stock - claims)
      }, 60_000, 200).catch(() => {})
      checks.push(await checkRows(pool, coupon, stock, claims))
      await stopChild(api.child)
    }
    if (targets.includes('ceiling')) {
      const ceiling = await startChild('ceiling', env)
      children.push(ceiling.child)
      await burst(ceiling.url, 'WARM', 2000, connections)
      lines.push({ label: 'bare Fastify', result: await burst(ceiling.url, 'CEILING', claims, connections) })
      await stopChild(ceiling.child)
    }

    for (const line of lines) console.log(summary(line))
    const rate = (label: string): number => claimsPerSecond((lines.find((line) => line.label === label) as Line).result)
    if (lines.length === 3) {
      console.log(`event-driven is ${(rate('event-driven') / rate('direct') * 100).toFixed(1)} % of direct mode and ${(rate('event-driven') / rate('bare Fastify') * 100).toFixed(1)} % of the bare-Fastify ceiling; direct is ${(rate('direct') / rate('bare Fastify') * 100).toFixed(1)} % of it`)
    }
    for (const check of checks) console.log(check)
    if (checks.some((check) => check.startsWith('FAIL'))) process.exitCode = 1
  } finally {
    await Promise.all(children.map(stopChild))
    await consumer.stop()
    await pool.end()
    await admin.query(`DROP SCHEMA ${escapeIdentifier(schema)} CASCADE`)
    await admin.end()
    const redis = new Redis(config.redisUrl)
    await deleteRedisPrefix(redis, config.redisPrefix)
    redis.disconnect()
    const kafka = new Kafka({ brokers: config.kafkaBrokers, logLevel: logLevel.NOTHING })
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    const kafkaAdmin = kafka.admin()
    await kafkaAdmin.connect()
    const { groups } = await kafkaAdmin.listGroups()
    await kafkaAdmin.deleteGroups(groups.map((group) => group.groupId).filter((id) => id.includes(run))).catch(() => {})
    await kafkaAdmin.disconnect()
  }
}

await main()
