// `npm run bench:aggregate -- --scale 0.1 [--partitions 8] [--seed 1] [--format words|packed|lines] [--instances 1,2]
// [--cpu-prof DIR]`
//
// Aggregates already-produced generated files: the files are generated under data/bench-<scale>/
// (data/scale-1/ is used as is for --scale 1) and produced into Kafka once, under topics named
// bench-<scale>-p<partitions>-<format>.*; later runs reuse them (the manifests are kept beside the
// files). --format picks the records' format, so both can be compared on the same files.
// Then, for each count in --instances, in this one run: that many aggregator processes (this script
// with --child, so each peak RSS is its own) form a fresh consumer group on a fresh Redis prefix;
// once the group has settled, a new run asking for the kept segments is published, and the time
// from publishing to the run's `applied` result is measured. Each process reports its share (the
// partitions it decided, their phases, its decide threads and partition states) and its peak RSS
// when stopped. --cpu-prof DIR writes each aggregator process's CPU profiles (its main thread and
// its decide threads) into DIR.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import type { Admin, Kafka } from 'kafkajs'
import { deleteRedisPrefix } from '../scripts/lib/cleanup.js'
import { waitFor } from '../scripts/lib/wait-for.js'
import type { AnswerKey } from '../src/gen/generate-coupons.js'
import { produceFile } from '../src/ingest/produce-file.js'
import { loadConfig, type Config } from '../src/shared/config.js'
import { createKafka, ensureTopics, topicNames, topicOptions } from '../src/shared/kafka.js'
import { createLogger } from '../src/shared/logger.js'
import { NODE_FLAGS } from '../src/shared/node-flags.js'
import { createRedis, type RedisClient } from '../src/shared/redis.js'
import { RUN_RESULT, redisKeys } from '../src/shared/redis-keys.js'
import { RECORD_FORMATS, encodeSegmentsRecord, newRunId, type RecordFormat, type SegmentManifest, type SegmentsRecord } from '../src/shared/segments.js'
import { Aggregator } from '../src/aggregator/aggregator.js'
import type { PartitionsStats } from '../src/aggregator/decide-partitions.js'
import { ValidSetSwap } from '../src/aggregator/valid-set-swap.js'
import { benchData, benchDataDir } from './lib/bench-data.js'

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '0.1' },
    partitions: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    format: { type: 'string', default: 'words' },
    instances: { type: 'string', default: '1,2' },
    'cpu-prof': { type: 'string' },
    child: { type: 'boolean', default: false },
    // a child's Redis prefix and consumer group, chosen by the parent
    prefix: { type: 'string' },
    group: { type: 'string' }
  }
})
const scale = Number(values.scale)
const partitions = Number(values.partitions)
const dataDir = benchDataDir(scale)
const format = values.format as RecordFormat
if (!RECORD_FORMATS.includes(format)) throw new Error(`--format is one of ${RECORD_FORMATS.join(', ')}`)
const manifestsPath = join(dataDir, `manifests-p${partitions}-${format}.json`)
const logLevel = process.env.LOG_LEVEL ?? 'fatal'

function benchConfig (redisPrefix = 'bench-aggregate:', groupId?: string): Config {
  return loadConfig({
    ...process.env,
    COUPON_DATA_DIR: dataDir,
    KAFKA_PARTITIONS: String(partitions),
    KAFKA_TOPIC_PREFIX: `bench-${values.scale}-p${partitions}-${format}.`,
    REDIS_PREFIX: redisPrefix,
    ...(groupId === undefined ? {} : { AGGREGATOR_GROUP_ID: groupId }),
    LOG_LEVEL: logLevel
  })
}

const config = benchConfig(values.prefix, values.group)
const logger = createLogger(config.logLevel, 'bench-aggregate')
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`

/** What a child prints on stdout, one JSON object a line (its pino logs are the other lines). */
type ChildReport =
  | { report: 'assignment', partitions: number[], coordinator: boolean }
  | { report: 'partitions', runId: string, stats: PartitionsStats }
  | { report: 'run', runId: string, state: string }
  | { report: 'fatal', error: string }
  | { report: 'exit', member: string, maxRssBytes: number, shares: Array<{ runId: string, stats: PartitionsStats }> }

/** The manifests of the produced files, if Kafka still holds every record they describe. */
async function reusableManifests (): Promise<SegmentManifest[] | null> {
  if (!existsSync(manifestsPath)) return null
  const manifests = JSON.parse(await readFile(manifestsPath, 'utf8')) as SegmentManifest[]
  const admin = createKafka(config, logger, 'bench-aggregate').admin()
  await admin.connect()
  try {
    const topics = await admin.listTopics()
    for (const manifest of manifests) {
      if (!topics.includes(manifest.topic)) return null
      const offsets = await admin.fetchTopicOffsets(manifest.topic)
      for (const range of manifest.partitions) {
        const found = offsets.find((o) => o.partition === range.partition)
        if (range.firstOffset === null) continue
        if (found === undefined || BigInt(found.low) > BigInt(range.firstOffset) || BigInt(found.high) <= BigInt(range.lastOffset as string)) return null
      }
    }
    return manifests
  } finally {
    await admin.disconnect()
  }
}

async function prepare (): Promise<SegmentManifest[]> {
  await benchData(scale, Number(values.seed))
  const kept = await reusableManifests()
  if (kept !== null) {
    console.log(`reusing the produced segments of ${dataDir} (${manifestsPath})`)
    return kept
  }
  console.log(`producing ${config.couponFiles.join(', ')} into Kafka (${partitions} partitions, ${format} records) ...`)
  const kafka = createKafka(config, logger, 'bench-aggregate')
  // Created once up front: three produceFile calls creating the same topics at once race.
  const admin = kafka.admin()
  await admin.connect()
  const topics = topicNames(config)
  await ensureTopics(admin, [...config.couponFiles.map((file) => ({ topic: topics.data(file), numPartitions: partitions })), { topic: topics.segments, numPartitions: 1 }], topicOptions(config))
  await admin.disconnect()
  const runId = newRunId()
  const started = performance.now()
  const manifests = await Promise.all(config.couponFiles.map((file) => produceFile({ config, kafka, logger, file, runId, recordFormat: format })))
  console.log(`produced in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  await writeFile(manifestsPath, JSON.stringify(manifests, null, 2))
  return manifests
}

/** One aggregator instance, reporting to the parent on stdout until SIGTERM. */
async function child (): Promise<void> {
  const report = (line: ChildReport): void => { process.stdout.write(`${JSON.stringify(line)}\n`) }
  const shares: Array<{ runId: string, stats: PartitionsStats }> = []
  const aggregator: Aggregator = new Aggregator({
    config,
    logger,
    onAssignment: (owned, coordinator) => { report({ report: 'assignment', partitions: owned, coordinator }) },
    onPartitions: (runId, stats) => {
      shares.push({ runId, stats })
      report({ report: 'partitions', runId, stats })
    },
    onRun: (stats) => { report({ report: 'run', runId: stats.runId, state: stats.outcome.state }) },
    onFatal: (err) => {
      report({ report: 'fatal', error: err.message })
      aggregator.close().finally(() => process.exit(1)).catch(() => {})
    }
  })
  process.once('SIGTERM', () => {
    aggregator.close().finally(() => {
      report({ report: 'exit', member: aggregator.member, maxRssBytes: process.resourceUsage().maxRSS * 1024, shares })
      // Stdout is a pipe, written synchronously on Linux: the report is out before the exit.
      process.exit(0)
    }).catch(() => {})
  })
  await aggregator.start()
}

/** A child process and what it reported. */
interface Instance {
  process: ChildProcess
  /** resolves once the process exited and its stdout is read to the end */
  closed: Promise<void>
  assignment?: { partitions: number[], coordinator: boolean }
  /** assignments received: one more during the measured run means the group rebalanced */
  assignments: number
  exit?: Extract<ChildReport, { report: 'exit' }>
  failure?: string
}

function spawnInstance (prefix: string, group: string): Instance {
  const profile = values['cpu-prof'] === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`]
  const args = [...profile, ...NODE_FLAGS, '--import', 'tsx', 'bench/aggregate.ts', '--child', '--scale', values.scale, '--partitions', values.partitions,
    '--seed', values.seed, '--format', format, '--prefix', prefix, '--group', group]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const instance: Instance = { process: child, closed: once(child, 'close').then(() => {}), assignments: 0 }
  createInterface({ input: instance.process.stdout! }).on('line', (line) => {
    let parsed: ChildReport | null = null
    try {
      const value = JSON.parse(line) as Partial<ChildReport>
      if (typeof value.report === 'string') parsed = value as ChildReport
    } catch {}
    // Log lines (LOG_LEVEL=info to see them) go to stderr, away from the figures.
    if (parsed === null) {
      process.stderr.write(`${line}\n`)
      return
    }
    switch (parsed.report) {
      case 'assignment':
        instance.assignment = { partitions: parsed.partitions, coordinator: parsed.coordinator }
        instance.assignments++
        break
      case 'exit': instance.exit = parsed; break
      case 'fatal': instance.failure = parsed.error; break
    }
  })
  child.once('close', (code, signal) => {
    if (instance.exit === undefined) instance.failure ??= `exited (${signal ?? code}) without its exit report`
  })
  return instance
}

/**
 * The group has settled when the latest assignments give every partition to one instance, each
 * instance some, and exactly one of them coordinates.
 */
function settled (instances: Instance[]): boolean {
  const owned = instances.flatMap((instance) => instance.assignment?.partitions ?? [])
  return instances.every((instance) => (instance.assignment?.partitions.length ?? 0) > 0) &&
    owned.length === partitions && new Set(owned).size === partitions && owned.every((p) => p < partitions) &&
    instances.filter((instance) => instance.assignment?.coordinator === true).length === 1
}

async function stopInstance (instance: Instance): Promise<void> {
  const child = instance.process
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    await instance.closed
    clearTimeout(timer)
  }
  await instance.closed
}

async function deleteGroup (admin: Admin, group: string): Promise<void> {
  // A member that did not leave cleanly (a killed child) holds the group until its session expires.
  await waitFor(`deleting consumer group ${group}`, async () => {
    try {
      await admin.deleteGroups([group])
    } catch (err) {
      const types = ((err as { groups?: Array<{ error?: { type?: string } }> }).groups ?? []).map((g) => g.error?.type)
      if (types.includes('GROUP_ID_NOT_FOUND')) return true
      throw err
    }
    return true
  }, 30_000, 500)
}

interface Measurement {
  instances: number
  seconds: number
  codesRead: number
  validCount: number
  matches: boolean
  /** the group rebalanced during the measured run: the time includes partitions moving */
  rebalanced: boolean
  processes: Array<{ member: string, coordinator: boolean, share: PartitionsStats, maxRssBytes: number }>
}

/** Sums a process's shares of one run (it decides more than once when partitions move to it). */
function sumShares (shares: Array<{ runId: string, stats: PartitionsStats }>, runId: string): PartitionsStats {
  const sum: PartitionsStats = { partitions: [], codesRead: 0, validCount: 0, stateBytes: 0, states: 0, decideThreads: 0, staged: 0, ms: { read: 0, decide: 0, stage: 0, total: 0 } }
  for (const { stats } of shares.filter((share) => share.runId === runId)) {
    sum.partitions.push(...stats.partitions)
    sum.codesRead += stats.codesRead
    sum.validCount += stats.validCount
    sum.stateBytes = Math.max(sum.stateBytes, stats.stateBytes)
    sum.states = Math.max(sum.states, stats.states)
    sum.decideThreads = Math.max(sum.decideThreads, stats.decideThreads)
    for (const phase of ['read', 'decide', 'stage', 'total'] as const) sum.ms[phase] += stats.ms[phase]
  }
  sum.partitions.sort((a, b) => a - b)
  return sum
}

async function measure (count: number, manifests: SegmentManifest[], key: AnswerKey, kafka: Kafka, admin: Admin, redis: RedisClient): Promise<Measurement> {
  const tag = randomBytes(4).toString('hex')
  const prefix = `bench-aggregate-${tag}:`
  const group = `${config.kafkaTopicPrefix}bench-aggregate-${tag}`
  const keys = redisKeys(prefix)
  const segmentsTopic = topicNames(config).segments
  // With nothing applied, a coordinator replays coupons.segments from its start, and would plan
  // the newest ready run there (the previous measurement's) as soon as the group forms, before
  // the run measured here is published. Starting the replay at the topic's end, like a deployment
  // that has applied everything before, leaves it the measured run alone.
  const [end] = await admin.fetchTopicOffsets(segmentsTopic)
  await new ValidSetSwap(redis, prefix, logger).advanceReplayFrom(BigInt(end.high))
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  const instances: Instance[] = []
  try {
    await producer.connect()
    for (let i = 0; i < count; i++) instances.push(spawnInstance(prefix, group))
    // waitFor retries a check that throws: a failed process ends the wait with a value instead.
    const failure = (): string | undefined => instances.find((instance) => instance.failure !== undefined)?.failure
    const failed = (): void => {
      if (failure() !== undefined) throw new Error(`an aggregator process failed: ${failure()}`)
    }
    await waitFor(`the group of ${count} aggregator(s) to settle`, async () => failure() !== undefined || settled(instances), 120_000, 50)
    failed()
    // Stopping the processes rebalances the group again: the roles are those of the measured run.
    const coordinators = instances.map((instance) => instance.assignment?.coordinator === true)
    const assignments = instances.reduce((sum, instance) => sum + instance.assignments, 0)

    // A new run asking for the kept segments (the same records, re-labelled with its runId) makes a
    // fresh ready run. One send on a producer connected beforehand: the time is the aggregation's,
    // not that of connecting publishRunRecord's short-lived clients.
    const runId = newRunId()
    const records: SegmentsRecord[] = [
      { type: 'run', runId, files: manifests.map((manifest) => manifest.file), requestedAt: new Date().toISOString(), source: 'cli' },
      ...manifests.map((manifest) => ({ ...manifest, runId }))
    ]
    const started = performance.now()
    await producer.send({ topic: segmentsTopic, acks: -1, messages: records.map((record) => ({ partition: 0, value: encodeSegmentsRecord(record) })) })
    const state = await waitFor(`the result of run ${runId}`, async () => failure() ?? await redis.hget(keys.runResult(runId), RUN_RESULT.state), 600_000, 20)
    const seconds = (performance.now() - started) / 1000
    failed()
    if (state !== 'applied') throw new Error(`run ${runId} ended ${state}: ${await redis.hget(keys.runResult(runId), RUN_RESULT.error)}`)
    const [validCount, live] = await Promise.all([redis.hget(keys.runResult(runId), RUN_RESULT.validCount), redis.smembers(keys.valid)])
    const matches = live.sort().join() === key.valid.join()
    const rebalanced = instances.reduce((sum, instance) => sum + instance.assignments, 0) > assignments

    await Promise.all(instances.map(stopInstance))
    const processes = instances.map((instance, i) => {
      if (instance.exit === undefined) throw new Error(`an aggregator process did not report on exit: ${instance.failure ?? 'no reason'}`)
      return { member: instance.exit.member, coordinator: coordinators[i], share: sumShares(instance.exit.shares, runId), maxRssBytes: instance.exit.maxRssBytes }
    })
    const codesRead = processes.reduce((sum, { share }) => sum + share.codesRead, 0)
    return { instances: count, seconds, codesRead, validCount: Number(validCount), matches, rebalanced, processes }
  } finally {
    await Promise.allSettled(instances.map(stopInstance))
    const cleanup = await Promise.allSettled([producer.disconnect(), deleteRedisPrefix(redis, prefix), deleteGroup(admin, group)])
    for (const step of cleanup) if (step.status === 'rejected') console.warn(`clean-up of ${prefix} / ${group} failed: ${(step.reason as Error).message}`)
  }
}

/** [0, 1, 2, 3, 6] -> '0-3,6' */
function ranges (list: number[]): string {
  const parts: string[] = []
  for (let i = 0; i < list.length; i++) {
    let j = i
    while (list[j + 1] === list[j] + 1) j++
    parts.push(j > i ? `${list[i]}-${list[j]}` : String(list[i]))
    i = j
  }
  return parts.join(',')
}

function describe (m: Measurement): string {
  const lines = [
    `${m.instances} instance${m.instances === 1 ? '' : 's'}: request→applied ${m.seconds.toFixed(2)} s, ${m.codesRead.toLocaleString('en')} codes read, ` +
    `${m.validCount.toLocaleString('en')} valid (${m.matches ? 'matches' : 'DOES NOT MATCH'} answers.json)${m.rebalanced ? ', THE GROUP REBALANCED during the run' : ''}`,
    '  process                       partitions  codes read  read ms  decide ms  stage ms  threads  states  state    peak RSS'
  ]
  for (const p of m.processes) {
    lines.push(`  ${`${p.member}${p.coordinator ? ' (coord.)' : ''}`.padEnd(30)}${ranges(p.share.partitions).padEnd(12)}` +
      `${p.share.codesRead.toLocaleString('en').padStart(10)}  ${String(p.share.ms.read).padStart(7)}  ${String(p.share.ms.decide).padStart(9)}  ${String(p.share.ms.stage).padStart(8)}  ` +
      `${String(p.share.decideThreads).padStart(7)}  ${String(p.share.states).padStart(6)}  ${mb(p.share.stateBytes).padStart(6)}  ${mb(p.maxRssBytes).padStart(8)}`)
  }
  return lines.join('\n')
}

function summary (base: Measurement, m: Measurement): string {
  const single = base.processes.reduce((max, p) => Math.max(max, p.maxRssBytes), 0)
  const each = (value: (p: Measurement['processes'][number]) => number, of: number): string =>
    m.processes.map((p) => `${(value(p) / of).toFixed(2)}`).join(' / ')
  return `${m.instances} against ${base.instances}: time ×${(m.seconds / base.seconds).toFixed(2)} (${m.seconds.toFixed(2)} s against ${base.seconds.toFixed(2)} s); per process: ` +
    `codes read ×${each((p) => p.share.codesRead, base.codesRead)}, partition state ×${each((p) => p.share.stateBytes, base.processes[0].share.stateBytes)}, ` +
    `peak RSS ×${each((p) => p.maxRssBytes, single)} of ${base.instances === 1 ? 'the single process' : `the largest of ${base.instances}`}`
}

async function main (): Promise<void> {
  const counts = values.instances.split(',').map(Number)
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > partitions)) throw new Error(`--instances is a list of counts from 1 to --partitions (${partitions})`)
  const manifests = await prepare()
  const key = JSON.parse(await readFile(join(dataDir, 'answers.json'), 'utf8')) as AnswerKey
  const kafka = createKafka(config, logger, 'bench-aggregate')
  const admin = kafka.admin()
  await admin.connect()
  const redis = createRedis(config, 'worker', logger)
  const results: Measurement[] = []
  try {
    const codes = manifests.reduce((sum, manifest) => sum + manifest.codes, 0)
    console.log(`aggregating ${codes.toLocaleString('en')} codes from ${manifests.length} files (${format} records), ${partitions} partitions, MIN_FILES=${config.minFiles}`)
    for (const count of counts) {
      const measurement = await measure(count, manifests, key, kafka, admin, redis)
      console.log(describe(measurement))
      results.push(measurement)
    }
    for (const m of results.slice(1)) console.log(summary(results[0], m))
    // Figures from a wrong answer are worthless: fail the benchmark, like bench:e2e does.
    if (results.some((m) => !m.matches)) process.exitCode = 1
  } finally {
    await redis.quit()
    await admin.disconnect()
  }
}

if (values.child) await child()
else await main()
