// `npm run bench:aggregate -- --scale 0.1 [--partitions 8] [--seed 1] [--format packed|lines]`
//
// Aggregates already-produced generated files: the files are generated under data/bench-<scale>/
// (data/scale-1/ is used as is for --scale 1) and produced into Kafka once, under topics named
// bench-<scale>-p<partitions>-<format>.*; later runs reuse them (the manifests are kept beside the
// files). --format picks the records' format, so both can be compared on the same files.
// The aggregation itself runs in a fresh child process so that its peak RSS is its own, with a
// fresh Redis prefix, and prints codes/s, the time of each phase and the peak RSS.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { randomBytes } from 'node:crypto'
import { deleteRedisPrefix } from '../scripts/lib/cleanup.js'
import type { AnswerKey } from '../src/gen/generate-coupons.js'
import { produceFile } from '../src/ingest/produce-file.js'
import { loadConfig, type Config } from '../src/shared/config.js'
import { createKafka, ensureTopics, topicNames, topicOptions } from '../src/shared/kafka.js'
import { createLogger } from '../src/shared/logger.js'
import { createRedis } from '../src/shared/redis.js'
import { RECORD_FORMATS, newRunId, type RecordFormat, type SegmentManifest } from '../src/shared/segments.js'
import { aggregateRun } from '../src/aggregator/aggregate-run.js'
import { ValidSetSwap } from '../src/aggregator/valid-set-swap.js'
import { benchData, benchDataDir } from './lib/bench-data.js'

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '0.1' },
    partitions: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    format: { type: 'string', default: 'packed' },
    child: { type: 'boolean', default: false }
  }
})
const scale = Number(values.scale)
const partitions = Number(values.partitions)
const dataDir = benchDataDir(scale)
const format = values.format as RecordFormat
if (!RECORD_FORMATS.includes(format)) throw new Error(`--format is one of ${RECORD_FORMATS.join(', ')}`)
const manifestsPath = join(dataDir, `manifests-p${partitions}-${format}.json`)
const config: Config = loadConfig({
  ...process.env,
  COUPON_DATA_DIR: dataDir,
  KAFKA_PARTITIONS: String(partitions),
  KAFKA_TOPIC_PREFIX: `bench-${values.scale}-p${partitions}-${format}.`,
  REDIS_PREFIX: `bench-aggregate-${randomBytes(4).toString('hex')}:`,
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'fatal'
})
const logger = createLogger(config.logLevel, 'bench-aggregate')
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`

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

async function prepare (): Promise<void> {
  await benchData(scale, Number(values.seed))
  if (await reusableManifests() !== null) {
    console.log(`reusing the produced segments of ${dataDir} (${manifestsPath})`)
    return
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
}

async function aggregate (): Promise<void> {
  const manifests = await reusableManifests()
  if (manifests === null) throw new Error(`no produced segments for ${dataDir}; run without --child first`)
  const key = JSON.parse(await readFile(join(dataDir, 'answers.json'), 'utf8')) as AnswerKey
  const kafka = createKafka(config, logger, 'bench-aggregate')
  const admin = kafka.admin()
  await admin.connect()
  const redis = createRedis(config.redisUrl, 'worker', logger)
  const swap = new ValidSetSwap(redis, config.redisPrefix, logger)
  try {
    // The cleanup step only deletes records before these segments, so the next run can reuse them.
    // A fresh Redis prefix has nothing applied to be fresher than, so any offset will do.
    const stats = await aggregateRun({ config, kafka, admin, swap, logger, runId: newRunId(), segments: manifests, segmentsOffset: 0n })
    const live = (await redis.smembers(swap.keys.valid)).sort()
    const rss = process.resourceUsage().maxRSS * 1024
    const seconds = stats.ms.total / 1000
    const matches = live.join() === key.valid.join()
    console.log([
      `aggregated ${stats.codesRead.toLocaleString('en')} codes from ${manifests.length} files (${format} records), ${partitions} partitions, MIN_FILES=${config.minFiles}`,
      `  valid codes: ${stats.validCount} (${matches ? 'matches' : 'DOES NOT MATCH'} answers.json)`,
      `  total: ${seconds.toFixed(2)} s, ${Math.round(stats.codesRead / seconds).toLocaleString('en')} codes/s`,
      `  phases (ms, summed over partitions): read ${stats.ms.read}, decide ${stats.ms.decide}, stage ${stats.ms.stage}, swap ${stats.ms.swap}, cleanup ${stats.ms.cleanup}`,
      `  partition state buffers: ${mb(stats.stateBytes)} (two of the largest partition: ${Math.round(stats.stateBytes / 16).toLocaleString('en')} codes)`,
      `  peak RSS: ${mb(rss)}`
    ].join('\n'))
    // Figures from a wrong answer are worthless: fail the benchmark, like bench:e2e does.
    if (!matches) process.exitCode = 1
  } finally {
    await deleteRedisPrefix(redis, config.redisPrefix)
    await redis.quit()
    await admin.disconnect()
  }
}

if (values.child) {
  await aggregate()
} else {
  await prepare()
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/aggregate.ts', '--child', '--scale', values.scale, '--partitions', values.partitions, '--seed', values.seed, '--format', format], { stdio: 'inherit' })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  process.exitCode = code ?? 1
}
