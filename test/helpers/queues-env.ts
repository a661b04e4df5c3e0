// A queue stack for one test: its own config (fresh prefixes, a fresh data folder), an IngestRuns,
// a sandboxed worker, and the teardown that closes them and removes everything they made.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { Registry } from 'prom-client'
import type { Test } from 'tap'
import { IngestRuns } from '../../src/queues/ingest-runs.js'
import { createIngestWorker } from '../../src/queues/ingest-worker.js'
import { deleteRedisPrefix, deleteTopics, silentLogger, testConfig, testKafka } from './test-env.js'

/** `worker: false` leaves starting (and closing) workers to the test. */
export async function queueStack (t: Test, label: string, env: NodeJS.ProcessEnv = {}, options: { worker?: boolean, metricsRegistry?: Registry } = {}) {
  const dir = await mkdtemp(join(tmpdir(), `queues-${label}-`))
  const config = testConfig(label, { COUPON_DATA_DIR: dir, ...env })
  const kafka = testKafka(config)
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null })
  const runs = new IngestRuns({ config, logger: silentLogger })
  const worker = options.worker === false ? null : createIngestWorker({ config, logger: silentLogger, metricsRegistry: options.metricsRegistry })
  t.teardown(async () => {
    await worker?.close()
    await runs.close()
    await deleteRedisPrefix(redis, config.redisPrefix)
    redis.disconnect()
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, config, kafka, redis, runs }
}
