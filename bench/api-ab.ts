// `npm run bench:api-ab -- --slices 6 --slice 3 'base:' 'limited:RATE_LIMIT_MAX=1000000000' …`:
// A/B of api variants on a noisy machine. bench:api's servers (one per variant, each with the
// environment its spec gives after the colon, plus the bare ceiling) all start at once and are
// loaded in turn for short slices, the order rotating each round, so that the machine's drift hits
// every variant alike; bench:api's load and published set. Prints each variant's mean requests/s
// and p99 over the slices, and both as ratios to the ceiling's.
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { deleteRedisPrefix } from '../scripts/lib/cleanup.js'
import { lookupPaths, publishBenchSet } from './lib/lookup-load.js'
import { startServeChild, stopChild } from './lib/serve-child.js'
import { loadConfig } from '../src/shared/config.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { slices: { type: 'string', default: '6' }, slice: { type: 'string', default: '3' }, connections: { type: 'string', default: '100' } }
})
const prefix = `bench-ab-${randomBytes(4).toString('hex')}:`
const config = loadConfig({ ...process.env, REDIS_PREFIX: prefix })
const redis = new Redis(config.redisUrl)
const valid = await publishBenchSet(redis, prefix, 100_000)
const paths = lookupPaths(valid)

const script = fileURLToPath(new URL('./api.ts', import.meta.url))
const variants = [...positionals.map((spec) => {
  const [name, envs = ''] = spec.split(':')
  const env = Object.fromEntries(envs.split(/\s+/).filter(Boolean).map((kv) => kv.split('=') as [string, string]))
  // bench:api's server sets the rate limit from its argument, not from the environment.
  const rateLimit = env.RATE_LIMIT_MAX ?? '0'
  return { name: name!, role: 'api', env, rateLimit }
}), { name: 'ceiling', role: 'ceiling', env: {}, rateLimit: '0' }]

const children: ChildProcess[] = []
const load = async (url: string, duration: number) => autocannon({ url, connections: Number(values.connections), duration, requests: paths.map((path) => ({ method: 'GET', path })) })
try {
  const started = []
  for (const v of variants) {
    const s = await startServeChild(script, ['--serve', v.role, '--prefix', prefix, '--rate-limit', v.rateLimit], { ...process.env, ...v.env })
    children.push(s.child)
    started.push({ ...v, url: s.url, rps: [] as number[], p99: [] as number[] })
  }
  for (const s of started) await load(s.url, 2)
  const slices = Number(values.slices)
  for (let round = 0; round < slices; round++) {
    for (let k = 0; k < started.length; k++) {
      const s = started[(k + round) % started.length]!
      const r = await load(s.url, Number(values.slice))
      s.rps.push(r.requests.average)
      s.p99.push(r.latency.p99)
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
  const ceiling = started.at(-1)!
  for (const s of started) {
    console.log(`${s.name.padEnd(10)} ${Math.round(mean(s.rps)).toString().padStart(6)} req/s (${s.rps.map(Math.round).join(' ')})  p99 ${mean(s.p99).toFixed(1)} ms  /ceiling ${(mean(s.rps) / mean(ceiling.rps) * 100).toFixed(1)} %  p99/ceiling ${(mean(s.p99) / mean(ceiling.p99)).toFixed(2)}`)
  }
} finally {
  await Promise.all(children.map(stopChild))
  await deleteRedisPrefix(redis, prefix)
  redis.disconnect()
}
