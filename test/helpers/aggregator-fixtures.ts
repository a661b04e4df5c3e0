// A small pipeline for the aggregator tests: a temp data folder, a config with its own Redis prefix
// and topics, runs produced with the real ingest (publishRunRecord + produceFile), and the
// aggregator either in-process or as a child process that can be SIGKILLed.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { Redis } from 'ioredis'
import type { Kafka } from 'kafkajs'
import type { Test } from 'tap'
import { produceFile } from '../../src/ingest/produce-file.js'
import { publishRunRecord } from '../../src/ingest/run-record.js'
import type { AnswerKey } from '../../src/gen/generate-coupons.js'
import type { Config } from '../../src/shared/config.js'
import { redisKeys, type RedisKeys } from '../../src/shared/redis-keys.js'
import { newRunId, type SegmentManifest } from '../../src/shared/segments.js'
import { Aggregator } from '../../src/aggregator/aggregator.js'
import type { RunPhase } from '../../src/aggregator/run-phases.js'
import { spawnLogged, type LoggedChild } from './logged-child.js'
import { deleteRedisPrefix, deleteTopics, silentLogger, testConfig, testKafka } from './test-env.js'
import { waitFor } from '../../scripts/lib/wait-for.js'

export interface Pipeline {
  dir: string
  config: Config
  env: NodeJS.ProcessEnv
  kafka: Kafka
  redis: Redis
  keys: RedisKeys
}

export async function setupPipeline (t: Test, label: string, overrides: NodeJS.ProcessEnv = {}): Promise<Pipeline> {
  const dir = await mkdtemp(join(tmpdir(), `aggregator-${label}-`))
  const config = testConfig(label, { COUPON_DATA_DIR: dir, ...overrides })
  const env: NodeJS.ProcessEnv = {
    REDIS_URL: config.redisUrl,
    REDIS_PREFIX: config.redisPrefix,
    KAFKA_BROKERS: config.kafkaBrokers.join(','),
    KAFKA_TOPIC_PREFIX: config.kafkaTopicPrefix,
    KAFKA_PARTITIONS: String(config.kafkaPartitions),
    COUPON_DATA_DIR: dir,
    COUPON_FILES: config.couponFiles.join(','),
    MIN_FILES: String(config.minFiles),
    INGEST_CRON: 'off',
    LOG_LEVEL: 'info'
  }
  const kafka = testKafka(config)
  const redis = new Redis(config.redisUrl)
  t.teardown(async () => {
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    await deleteRedisPrefix(redis, config.redisPrefix)
    await redis.quit()
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, config, env, kafka, redis, keys: redisKeys(config.redisPrefix) }
}

/** Publishes a run record and produces its files from the data folder, like an ingest run does. */
export async function ingestRun (pipeline: Pipeline, files: string[], runId = newRunId()): Promise<{ runId: string, manifests: SegmentManifest[] }> {
  const { config, kafka } = pipeline
  await publishRunRecord(kafka, config, { type: 'run', runId, files, requestedAt: new Date().toISOString(), source: 'cli' })
  const manifests: SegmentManifest[] = []
  for (const file of files) manifests.push(await produceFile({ config, kafka, logger: silentLogger, file, runId }))
  return { runId, manifests }
}

export async function startAggregator (t: Test, config: Config): Promise<Aggregator> {
  const aggregator = new Aggregator({ config, logger: silentLogger })
  t.teardown(() => aggregator.close())
  await aggregator.start()
  return aggregator
}

/** The state of a run's result hash once the aggregator has written it. */
export { waitFor }

export async function runResult (pipeline: Pipeline, runId: string, timeoutMs = 60_000): Promise<Record<string, string>> {
  return await waitFor(`the result of run ${runId}`, async () => {
    const result = await pipeline.redis.hgetall(pipeline.keys.runResult(runId))
    return Object.keys(result).length > 0 ? result : null
  }, timeoutMs)
}

export async function liveSet (pipeline: Pipeline): Promise<string[]> {
  return (await pipeline.redis.smembers(pipeline.keys.valid)).sort()
}

export type AggregatorChild = LoggedChild

/**
 * `coupons aggregator` as a child process, with JSON logs on stdout. With `pauseAt`, the child is
 * test/helpers/paused-aggregator.ts instead: it logs "aggregator paused" and freezes at the first
 * event of that phase.
 */
export function spawnAggregator (t: Test, pipeline: Pipeline, options: { pauseAt?: RunPhase } = {}): AggregatorChild {
  const entry = options.pauseAt === undefined ? ['src/cli.ts', 'aggregator'] : ['test/helpers/paused-aggregator.ts', options.pauseAt]
  return spawnLogged(t, 'the aggregator', entry, pipeline.env)
}

/** Polls three codes at once (MULTI, so one consistent snapshot) until stopped. */
export function pollMembership (t: Test, pipeline: Pipeline, codes: string[]): { stop: () => Promise<Set<string>> } {
  const redis = pipeline.redis.duplicate()
  const seen = new Set<string>()
  const state = { running: true }
  const loop = (async () => {
    while (state.running) {
      const replies = await redis.multi(codes.map((code) => ['sismember', pipeline.keys.valid, code])).exec()
      seen.add((replies ?? []).map(([, member]) => String(member)).join(''))
    }
  })()
  let stopped: Promise<Set<string>> | undefined
  const stop = async (): Promise<Set<string>> => {
    stopped ??= (async () => {
      state.running = false
      await loop.catch(() => {})
      await redis.quit()
      return seen
    })()
    return await stopped
  }
  // A failing assertion earlier in the test must not leave the poller running until tap's timeout.
  t.teardown(stop)
  return { stop }
}

/**
 * Rewrites file 2 of a generated set so that a code valid through files 1 and 2 only (`dropped`)
 * leaves it and a code of file 1 only (`added`) joins it; `expected` is the valid set after that,
 * `kept` a code valid before and after.
 */
export async function changeSecondFile (pipeline: Pipeline, key: AnswerKey, files: string[]): Promise<{ dropped: string, added: string, expected: string[], kept: string }> {
  const dropped = Object.keys(key.planted).find((code) => key.planted[code].join() === [files[0], files[1]].join())
  const added = Object.keys(key.planted).find((code) => key.planted[code].join() === files[0])
  if (dropped === undefined || added === undefined) throw new Error('the answer key has no code in files 1 and 2 only, or none in file 1 only')
  const path = join(pipeline.dir, files[1])
  const lines = gunzipSync(await readFile(path)).toString('latin1').split('\n').filter((line) => line !== '' && line !== dropped)
  await writeFile(path, gzipSync(Buffer.from([...lines, added].join('\n') + '\n', 'latin1')))
  return { dropped, added, expected: key.valid.filter((code) => code !== dropped).concat(added).sort(), kept: key.valid.find((code) => code !== dropped) as string }
}
