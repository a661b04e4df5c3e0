// `npm run bench:e2e -- --scale S [--partitions P] [--rate R] [--runtime dist|tsx] [--keep]`: the whole
// pipeline through the real processes (api with its embedded worker, aggregator), from POST /admin/ingest to the
// swap, on files of S times the real size (generated once, see bench/lib/bench-data.ts), and in the
// same run the floor: decompressing and scanning the three files in parallel without Kafka. Prints
// figures; asserts nothing about time, but checks the published set against the answer key.
//
// Meanwhile a steady load of R requests/s (default 1000; 0: none) on GET /coupons/:code, against a
// previously published set (seeded before the run, as yesterday's set would be), gives the latency
// checkout sees before the run, during the ingest, during the aggregation and around the swap.
//
// The roles run from the compiled build (`npm run build`, then `node dist/cli.js`), as the Docker
// image runs them; `--runtime tsx` runs the sources through tsx as `npm start` does, which costs
// each process, and each ingest sandbox, about a second of CPU to transpile at start.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, openSync, readFileSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { Redis } from 'ioredis'
import { deleteRedisPrefix, deleteTopics } from '../scripts/lib/cleanup.js'
import { startRole } from '../scripts/lib/role-process.js'
import { waitFor } from '../scripts/lib/wait-for.js'
import { loadConfig } from '../src/shared/config.js'
import { createKafka } from '../src/shared/kafka.js'
import { createLogger } from '../src/shared/logger.js'
import type { Run, StartedRun } from '../src/shared/run-contract.js'
import { META, redisKeys } from '../src/shared/redis-keys.js'
import { benchData } from './lib/bench-data.js'
import { trackPeakRss, treeCpuSeconds } from './lib/process-tree.js'
import { scanFloorInChild } from './lib/scan-floor.js'
import { SteadyLoad, type WindowFigures } from './lib/steady-load.js'

const run = promisify(execFile)
const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '0.01' },
    partitions: { type: 'string', default: '8' },
    port: { type: 'string', default: '3917' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '10' },
    before: { type: 'string', default: '10' },
    runtime: { type: 'string', default: 'dist' },
    keep: { type: 'boolean', default: false }
  }
})
const scale = Number(values.scale)
const KAFKA_DATA = '.data/kafka'
/** infra/infra.sh's pid file of the broker it started */
const KAFKA_PID = '.data/kafka.pid'
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(0)
const s = (ms: number): string => (ms / 1000).toFixed(1)
const rate = Number(values.rate)
/** seconds either side of the swap in the "around the swap" window */
const AROUND_SWAP_S = 2
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
const randomCode = (): string => Array.from(randomBytes(8 + randomBytes(1)[0] % 3), (byte) => ALPHABET[byte % ALPHABET.length]).join('')
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

if (!['dist', 'tsx'].includes(values.runtime)) throw new Error('--runtime is dist or tsx')
const cli = values.runtime === 'dist' ? 'dist/cli.js' : undefined
if (cli !== undefined) {
  console.log('building dist/ (npm run build)...')
  await run('npm', ['run', '-s', 'build'])
}

// 1. Data: generated once per scale, then reused.
const { dir: dataDir, key } = await benchData(scale)
const files = Object.keys(key.files)

// 2. The floor: the three files decompressed and scanned in parallel processes.
const floorStarted = Date.now()
const floor = await Promise.all(files.map(async (file) => await scanFloorInChild(join(dataDir, file))))
const floorMs = Date.now() - floorStarted
const totalCodes = floor.reduce((sum, f) => sum + f.codes, 0)
const totalGz = floor.reduce((sum, f) => sum + f.compressed, 0)

// 3. The pipeline, through the real processes.
const name = `bench-e2e-${randomBytes(3).toString('hex')}`
const token = randomBytes(24).toString('hex')
const env: NodeJS.ProcessEnv = {
  ...process.env,
  PORT: values.port,
  HOST: '127.0.0.1',
  REDIS_PREFIX: `${name}:`,
  KAFKA_TOPIC_PREFIX: `${name}.`,
  KAFKA_PARTITIONS: values.partitions,
  COUPON_DATA_DIR: dataDir,
  ADMIN_TOKEN: token,
  INGEST_CRON: 'off',
  RATE_LIMIT_MAX: '0',
  LOG_LEVEL: 'info'
}
const config = loadConfig(env)
const base = `http://127.0.0.1:${values.port}`
const auth = { authorization: `Bearer ${token}` }
await mkdir('.data', { recursive: true })
const roles = ['aggregator', 'api'].map((role) => {
  const log = openSync(`.data/${name}-${role}.log`, 'w')
  return startRole(role, [], env, ['ignore', log, log], cli)
})
const peaks = roles.map((role) => trackPeakRss(role.child.pid!))
const redis = new Redis(config.redisUrl)
let load: SteadyLoad | null = null
let cpuTracked: Array<{ label: string, pid: number }> = []
/** CPU seconds of each tracked process tree, and of this process (the steady load) last. */
async function cpuNow (): Promise<number[]> {
  const each = await Promise.all(cpuTracked.map(async ({ pid }) => Number.isInteger(pid) ? await treeCpuSeconds(pid) : NaN))
  const own = process.cpuUsage()
  return [...each, (own.user + own.system) / 1e6]
}
/** "label seconds, …" of the CPU each tracked tree and this process spent between two cpuNow(), per `perSeconds`. */
function cpuSpent (from: number[], to: number[], perSeconds = 1, digits = 1): string {
  return [...cpuTracked.map((t) => t.label), 'bench + steady load'].map((label, i) => `${label} ${((to[i] - from[i]) / perSeconds).toFixed(digits)}`).join(', ')
}

try {
  // Yesterday's set: 100,000 codes and the answer key's valid codes (which stay valid after the swap).
  const keys = redisKeys(config.redisPrefix)
  const seeded = Array.from({ length: 100_000 }, randomCode).filter((code) => !key.decoys.includes(code))
  for (let i = 0; i < seeded.length; i += 10_000) await redis.sadd(keys.valid, ...seeded.slice(i, i + 10_000))
  await redis.sadd(keys.valid, ...key.valid)
  await redis.hset(keys.meta, { [META.generation]: 'bench-seed', [META.lastSwapAt]: new Date().toISOString(), [META.validCount]: String(seeded.length + key.valid.length) })

  // CPU seconds from the request to the swap, per process tree: what the pipeline costs the two cores.
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1])
  const brokerPid = existsSync(KAFKA_PID) ? Number(readFileSync(KAFKA_PID, 'utf8').trim()) : NaN
  cpuTracked = [
    { label: 'api + ingest sandboxes', pid: roles[1].child.pid! },
    { label: 'aggregator', pid: roles[0].child.pid! },
    { label: 'Kafka broker', pid: brokerPid },
    { label: 'Redis', pid: redisPid }
  ]
  await waitFor('the api', async () => ((await fetch(`${base}/health`)).ok ? true : undefined), 60_000)
  const loadStarted = Date.now()
  const cpuAtLoad = await cpuNow()
  if (rate > 0) {
    // A third each: valid codes (200), codes of the seeded set that the swap retires, fresh codes (404).
    const paths = Array.from({ length: 3000 }, (_, i) => `/coupons/${[key.valid[i % key.valid.length], seeded[i], randomCode()][i % 3]}`)
    load = new SteadyLoad(base, paths, rate, Number(values.connections))
    await sleep(Number(values.before) * 1000)
  }
  const cpuAtRequest = await cpuNow()
  const loadMs = Date.now() - loadStarted
  const requested = Date.now()
  const response = await fetch(`${base}/admin/ingest`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })
  if (response.status !== 202) throw new Error(`POST /admin/ingest answered ${response.status}: ${await response.text()}`)
  const { runId } = await response.json() as StartedRun
  console.log(`run ${runId} requested; following it (logs: .data/${name}-*.log)`)

  const fileDone = new Map<string, number>()
  let ingestDone = 0
  const outcome = await waitFor('the swap', async () => {
    const view = await (await fetch(`${base}/admin/runs/${runId}`, { headers: auth })).json() as Run
    // When each file's last attempt finished, as the run records it (not when this poll saw it).
    for (const f of view.files) {
      const finishedAt = f.attempts.at(-1)?.finishedAt
      if (f.state === 'completed' && !fileDone.has(f.file)) fileDone.set(f.file, (finishedAt == null ? Date.now() : Date.parse(finishedAt)) - requested)
    }
    if (ingestDone === 0 && view.files.every((f) => f.state === 'completed')) ingestDone = Math.max(...fileDone.values())
    const failed = view.files.find((f) => f.state === 'failed')
    if (failed !== undefined) return { failed: failed.file, result: null }
    return view.result === null ? undefined : { failed: null, result: view.result }
  }, 6 * 3600_000, 250)
  if (outcome.failed !== null) throw new Error(`the ingest of ${outcome.failed} failed (see .data/${name}-api.log)`)
  const result = outcome.result
  const cpuAtSwap = await cpuNow()
  if (result.state !== 'applied' || result.appliedAt === null) throw new Error(`the run ended as ${result.state}: ${result.error}`)
  // The swap's own time (the result's appliedAt, also the meta's lastSwapAt), not when this poll saw it.
  const swapAt = Date.parse(result.appliedAt)
  const swapped = swapAt - requested
  const peakMb = peaks.map((peak) => peak.stop())
  let latency: WindowFigures[] = []
  if (load !== null) {
    await sleep(Math.max(0, swapAt + AROUND_SWAP_S * 1000 - Date.now()))
    await load.stop()
    const ingestEnd = requested + ingestDone
    latency = [
      { label: 'before the run (same load)', from: loadStarted, to: requested },
      { label: 'during the ingest', from: requested, to: ingestEnd },
      { label: 'during the aggregation', from: ingestEnd, to: swapAt },
      { label: `around the swap (±${AROUND_SWAP_S} s)`, from: swapAt - AROUND_SWAP_S * 1000, to: swapAt + AROUND_SWAP_S * 1000 },
      { label: 'whole run (request → swap)', from: requested, to: swapAt }
    ].map((window) => (load as SteadyLoad).figures(window))
    load = null
  }

  // The published set must be the answer key.
  let wrong = 0
  for (const code of key.valid) if ((await fetch(`${base}/coupons/${code}`)).status !== 200) wrong++
  for (const code of key.decoys) if ((await fetch(`${base}/coupons/${code}`)).status !== 404) wrong++

  const topicDirs = existsSync(KAFKA_DATA) ? (await readdir(KAFKA_DATA)).filter((dir) => dir.startsWith(name)) : []
  // Blocks really used, not apparent sizes: Kafka preallocates its index files sparsely.
  const kafkaBytes = topicDirs.length === 0 ? NaN : Number((await run('du', ['-s', '--block-size=1', ...topicDirs.map((dir) => join(KAFKA_DATA, dir))])).stdout.split('\n').filter(Boolean).reduce((sum, line) => sum + Number(line.split('\t')[0]), 0))

  const lines = [
    `scale ${scale}: ${files.length} files, ${mb(totalGz)} MiB gzipped, ${(totalCodes / 1e6).toFixed(1)}M codes, ${values.partitions} partitions; ${key.valid.length} valid codes`,
    `machine: ${cpus().length} cores (${cpus()[0].model}), ${mb(totalmem())} MiB RAM, Node ${process.version}; roles run from ${cli ?? 'the sources through tsx'}`,
    '',
    '| stage | wall time |',
    '| --- | --- |',
    ...files.map((file) => `| ingest ${file} done | ${s(fileDone.get(file) ?? NaN)} s |`),
    `| all files in Kafka (ingest) | ${s(ingestDone)} s |`,
    `| aggregate + swap (after ingest) | ${s(swapped - ingestDone)} s |`,
    `| request → swap (total) | ${s(swapped)} s |`,
    `| floor: gunzip + scan, 3 files in parallel, no Kafka | ${s(floorMs)} s |`,
    '',
    `throughput request → swap: ${(totalCodes / (swapped / 1000) / 1e6).toFixed(2)}M codes/s, ${(totalGz / 2 ** 20 / (swapped / 1000)).toFixed(1)} MiB/s gzipped (floor: ${(totalCodes / (floorMs / 1000) / 1e6).toFixed(2)}M codes/s); pipeline/floor = ${(swapped / floorMs).toFixed(1)}×`,
    `swap itself: ${result.swapMs} ms; valid codes published: ${result.validCount}; answer-key mismatches: ${wrong}`,
    `peak RSS: aggregator ${peakMb[0].toFixed(0)} MiB, api + worker sandboxes ${peakMb[1].toFixed(0)} MiB (largest sandbox ${peaks[1].peakChildMb().toFixed(0)} MiB), floor scanners ${floor.map((f) => f.peakRssMb.toFixed(0)).join(' / ')} MiB`,
    ...(rate > 0 ? [`CPU seconds per second before the run, the steady load alone (${s(loadMs)} s): ${cpuSpent(cpuAtLoad, cpuAtRequest, loadMs / 1000, 2)}`] : []),
    `CPU seconds request → swap (${s(swapped)} s wall × ${cpus().length} cores = ${s(swapped * cpus().length)} s): ${cpuSpent(cpuAtRequest, cpuAtSwap)}; sum ${cpuAtSwap.reduce((sum, cpu, i) => sum + cpu - cpuAtRequest[i], 0).toFixed(1)}`,
    `Kafka disk for this run's topics after the swap: ${Number.isNaN(kafkaBytes) ? 'n/a (broker data not under .data/kafka)' : `${mb(kafkaBytes)} MiB`}`,
    ...(latency.length === 0
      ? []
      : [
          '',
          `latency of GET /coupons/:code under a steady ${rate} requests/s (${values.connections} connections):`,
          '',
          '| window | seconds | requests | p50 | p99 | max | not 200/404 | statuses |',
          '| --- | --- | --- | --- | --- | --- | --- | --- |',
          ...latency.map((f) => `| ${f.label} | ${f.seconds.toFixed(1)} | ${f.requests} | ${f.p50.toFixed(1)} ms | ${f.p99.toFixed(1)} ms | ${f.max.toFixed(0)} ms | ${f.unexpected} | ${f.statuses} |`),
          '',
          `p99 during the run / before: ${(latency[4].p99 / latency[0].p99).toFixed(2)}×; around the swap / before: ${(latency[3].p99 / latency[0].p99).toFixed(2)}×`
        ])
  ]
  console.log(lines.join('\n'))
  if (wrong > 0) process.exitCode = 1
} finally {
  await load?.stop()
  await Promise.all(roles.map((role) => role.stop()))
  if (!values.keep) {
    await deleteTopics(createKafka(config, createLogger('error', 'bench'), 'bench-e2e'), config.kafkaTopicPrefix)
    await deleteRedisPrefix(redis, config.redisPrefix)
  }
  redis.disconnect()
}
