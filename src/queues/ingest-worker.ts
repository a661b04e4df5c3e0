// The ingest workers (DESIGN section 8), embedded in the API or run alone by `coupons worker`:
// - file jobs run in a sandboxed child process (ingest-processor), INGEST_CONCURRENCY at a time;
// - run jobs are light and run here: a run's parent completes once its files have, and the
//   scheduler's `start-run` jobs become real runs (RunRecord + flow).
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FlowProducer, Worker, type Job } from 'bullmq'
import type { Registry } from 'prom-client'
import type { Config } from '../shared/config.js'
import { createKafka } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { NODE_FLAGS } from '../shared/node-flags.js'
import { createRedis } from '../shared/redis.js'
import { redisKeys } from '../shared/redis-keys.js'
import {
  FILES_QUEUE, LOCK_DURATION_MS, RUNS_QUEUE, RUN_JOB, SANDBOX_CONFIG_ENV, STALLED_INTERVAL_MS, START_RUN_JOB,
  type FileJobResult, type RunJobData, type StartRunJobData
} from './ingest-jobs.js'
import { IngestMetrics } from './ingest-metrics.js'
import { startRun } from './ingest-runs.js'

/**
 * The processor file next to this module, with this module's extension: `.ts` when run through
 * tsx (tests, `npm run coupons`), `.js` from the build in `dist/`.
 */
export const PROCESSOR_URL = new URL(`./ingest-processor${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

const CANCEL_EVERY_MS = 200

/** What a sandboxed child takes from the host's environment: what Node itself may need, nothing more. */
export const SANDBOX_INHERITED_ENV = ['PATH', 'HOME', 'TMPDIR', 'TZ', 'LANG', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'] as const

/**
 * The whole environment of a sandboxed child. Its configuration arrives as JSON without the admin
 * and metrics tokens and the flash sale's DATABASE_URL (which may hold a password), and the host's
 * other variables (ADMIN_TOKEN itself, credentials of whatever else runs in the host) are not
 * passed on: a file job has no use for them.
 */
export function sandboxEnv (config: Config, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { adminToken: _adminToken, metricsToken: _metricsToken, databaseUrl: _databaseUrl, ...sandboxConfig } = config
  const inherited = SANDBOX_INHERITED_ENV.filter((name) => env[name] !== undefined).map((name) => [name, env[name]])
  return { ...Object.fromEntries(inherited), [SANDBOX_CONFIG_ENV]: JSON.stringify(sandboxConfig) }
}

/**
 * The Node arguments of a sandboxed child: the host's (tsx's loader when run from the sources), and
 * NODE_FLAGS whatever the host was started with. Not the host's --inspect, whose port a child
 * would take too.
 */
export function sandboxExecArgv (execArgv: readonly string[] = process.execArgv): string[] {
  const own = execArgv.filter((arg) => !arg.startsWith('--inspect') && !NODE_FLAGS.includes(arg))
  return [...own, ...NODE_FLAGS]
}

/**
 * A BullMQ worker whose processor runs sandboxed (file work never blocks the caller's event loop).
 * With a registry, the ingest's metrics (bytes, codes, per-file progress) are kept in it.
 */
export function createIngestWorker (options: { config: Config, logger: Logger, metricsRegistry?: Registry }): { close (): Promise<void> } {
  const { config } = options
  const logger = options.logger.child({ component: 'ingest-worker' })
  const { bullPrefix: prefix } = redisKeys(config.redisPrefix)
  const connection = createRedis(config, 'worker', logger)
  const kafka = createKafka(config, logger, 'coupons-ingest-scheduler')
  const flows = new FlowProducer({ connection, prefix })

  const files = new Worker<unknown, FileJobResult>(FILES_QUEUE, PROCESSOR_URL, {
    connection,
    prefix,
    concurrency: config.ingestConcurrency,
    // A child process per concurrent job: its own heap, and a crash in it fails one job, not the host.
    useWorkerThreads: false,
    workerForkOptions: { env: sandboxEnv(config), execArgv: sandboxExecArgv() },
    // The lock is renewed by the worker, not by the child, however long the file takes.
    lockDuration: LOCK_DURATION_MS,
    stalledInterval: STALLED_INTERVAL_MS
  })

  if (options.metricsRegistry !== undefined) new IngestMetrics(options.metricsRegistry).watch(files)

  const runs = new Worker<RunJobData | StartRunJobData>(RUNS_QUEUE, async (job: Job<RunJobData | StartRunJobData>) => {
    if (job.name === START_RUN_JOB) {
      const { source } = job.data as StartRunJobData
      const started = await startRun({ config, kafka, flows }, config.couponFiles, source)
      logger.info({ runId: started.runId, source }, 'run started')
      return started
    }
    if (job.name === RUN_JOB) {
      const values = await job.getChildrenValues<FileJobResult>()
      const segments = Object.values(values).map(({ file, segmentId, codes }) => ({ file, segmentId, codes }))
      logger.info({ runId: (job.data as RunJobData).runId, segments }, 'run ingested')
      return { segments }
    }
    throw new Error(`unknown job ${job.name} in ${RUNS_QUEUE}`)
  }, { connection, prefix, concurrency: 4 })

  files.on('active', (job) => { logger.info({ jobId: job.id, file: (job.data as { file?: string }).file }, 'ingest job started') })
  files.on('completed', (job) => { logger.info({ jobId: job.id, segmentId: job.returnvalue.segmentId, codes: job.returnvalue.codes }, 'ingest job completed') })
  files.on('failed', (job, err) => { logger.warn({ jobId: job?.id, attemptsMade: job?.attemptsMade, err }, 'ingest job failed') })
  const onError = (err: Error): void => { logger.error({ err }, 'ingest worker error') }
  files.on('error', onError)
  runs.on('error', onError)
  flows.on('error', onError)

  let closing: Promise<void> | undefined
  return {
    close () {
      closing ??= (async () => {
        // Stop taking jobs. close() alone would wait for the active file jobs (minutes), so cancel
        // them: each sandboxed child aborts its production (no manifest), puts its job back in the
        // queue, and close() then SIGTERMs the idle children. Cancelling again until close() is done
        // catches a job that a fetch already in flight hands over after the first cancel.
        const filesClosed = files.close()
        const cancel = (): void => { files.cancelAllJobs('the ingest worker is closing') }
        cancel()
        const recancel = setInterval(cancel, CANCEL_EVERY_MS)
        await Promise.allSettled([filesClosed.finally(() => { clearInterval(recancel) }), runs.close()])
        await flows.close().catch(() => {})
        connection.disconnect()
      })()
      return closing
    }
  }
}
