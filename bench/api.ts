// `npm run bench:api -- [--duration 10] [--connections 100] [--codes 100000] [--rate-limit 0]`: the real API server
// (startApi, in a child process) against the real Redis with a published set on a fresh prefix,
// driven by autocannon over 127.0.0.1 with valid, invalid and malformed codes mixed; then, in the
// same run and with the same load, a bare Fastify route returning a constant (the ceiling). Prints
// requests/s, p50, p99, errors, the ratio of requests/s and the ratio of p99. The rate limit is disabled for the run
// unless --rate-limit gives a maximum (every request comes from 127.0.0.1: a large one measures its cost).
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { deleteRedisPrefix } from '../scripts/lib/cleanup.js'
import { lookupPaths, publishBenchSet } from './lib/lookup-load.js'
import { startServeChild, stopChild } from './lib/serve-child.js'
import { startApi } from '../src/api/server.js'
import { loadConfig } from '../src/shared/config.js'
import { createLogger } from '../src/shared/logger.js'

/** Child mode: serve, print the URL on stdout, run until SIGTERM. */
async function serve (role: string, prefix: string, rateLimitMax: string): Promise<void> {
  if (role === 'api') {
    const config = loadConfig({ ...process.env, REDIS_PREFIX: prefix, PORT: '0', HOST: '127.0.0.1', RATE_LIMIT_MAX: rateLimitMax, INGEST_WORKER: 'false', INGEST_CRON: 'off', LOG_LEVEL: 'warn' })
    const server = await startApi({ config, logger: createLogger('warn', 'api') })
    process.once('SIGTERM', () => { server.close().then(() => process.exit(0), () => process.exit(1)) })
    console.log(server.url)
  } else {
    const app = Fastify()
    app.get('/coupons/:code', async () => ({ code: 'HAPPYHRS', valid: true }))
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    process.once('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
    console.log(url)
  }
}

const startChild = async (role: string, prefix: string, rateLimitMax: string) => startServeChild(fileURLToPath(import.meta.url), ['--serve', role, '--prefix', prefix, '--rate-limit', rateLimitMax])

async function load (url: string, paths: string[], duration: number, connections: number): Promise<autocannon.Result> {
  return autocannon({
    url,
    connections,
    duration,
    requests: paths.map((path) => ({ method: 'GET', path }))
  })
}

function summary (label: string, result: autocannon.Result): string {
  const statuses = Object.entries(result.statusCodeStats ?? {}).map(([status, { count }]) => `${status}: ${count}`).join(', ')
  return `${label.padEnd(8)} ${Math.round(result.requests.average).toString().padStart(7)} req/s   p50 ${result.latency.p50} ms   p99 ${result.latency.p99} ms   errors ${result.errors}   timeouts ${result.timeouts}   (${statuses})`
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      prefix: { type: 'string' },
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '100' },
      codes: { type: 'string', default: '100000' },
      'rate-limit': { type: 'string', default: '0' }
    }
  })
  if (values.serve !== undefined) return serve(values.serve, values.prefix ?? 'coupons:', values['rate-limit'])

  const duration = Number(values.duration)
  const connections = Number(values.connections)
  const prefix = `bench-api-${randomBytes(4).toString('hex')}:`
  const config = loadConfig({ ...process.env, REDIS_PREFIX: prefix })
  const redis = new Redis(config.redisUrl)
  // A published set as the aggregator leaves it, and the mix checkout sends.
  const valid = await publishBenchSet(redis, prefix, Number(values.codes))
  const paths = lookupPaths(valid)

  const children: ChildProcess[] = []
  try {
    console.log(`bench:api  ${connections} connections, ${duration} s per target, ${valid.length} codes in the set, Redis ${config.redisUrl}, rate limit ${values['rate-limit'] === '0' ? 'off' : values['rate-limit']}`)
    const api = await startChild('api', prefix, values['rate-limit'])
    children.push(api.child)
    await load(api.url, paths, 2, connections) // warm-up
    const apiResult = await load(api.url, paths, duration, connections)
    await stopChild(api.child)

    const ceiling = await startChild('ceiling', prefix, values['rate-limit'])
    children.push(ceiling.child)
    await load(ceiling.url, paths, 2, connections)
    const ceilingResult = await load(ceiling.url, paths, duration, connections)
    await stopChild(ceiling.child)

    console.log(summary('api', apiResult))
    console.log(summary('ceiling', ceilingResult))
    console.log(`ratio    ${(apiResult.requests.average / ceilingResult.requests.average * 100).toFixed(1)} % of the bare-Fastify ceiling, p99 ${(apiResult.latency.p99 / ceilingResult.latency.p99).toFixed(2)}× the ceiling's`)
  } finally {
    await Promise.all(children.map(stopChild))
    await deleteRedisPrefix(redis, prefix)
    redis.disconnect()
  }
}

await main()
