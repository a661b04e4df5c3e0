// The sandboxed processor of `ingest-files` jobs: BullMQ runs this file in a child process, so
// decompressing and scanning a 700 MB file never blocks the event loop of the process that hosts
// the worker (often the API). One child handles one job at a time and is reused for the next.
//
// A child never outlives its worker: when the host dies (even by SIGKILL, which runs no clean-up)
// the IPC channel closes, and the child stops its production and exits (see onOrphaned). Its job's
// lock then expires and BullMQ's stalled check gives the job to a live worker.
import type { SandboxedJob } from 'bullmq'
import { UnrecoverableError, WaitingError } from 'bullmq'

import type { Kafka } from 'kafkajs'
import { produceFile } from '../ingest/produce-file.js'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { createKafka } from '../shared/kafka.js'
import { createLogger, type Logger } from '../shared/logger.js'
import { createRedis, type RedisClient } from '../shared/redis.js'
import type { IngestAttempt, IngestProgress } from '../shared/run-contract.js'
import { newRunId } from '../shared/segments.js'
import { createLockRedis, withFileLock } from '../ingest/file-lock.js'
import { findManifest } from '../ingest/find-manifest.js'
import { checkRunPartitions, isFullRun, livePartitions } from '../ingest/run-partitions.js'
import { redisKeys } from '../shared/redis-keys.js'
import { lowerPriority } from '../shared/process-priority.js'
import { jobLockKey, SANDBOX_CONFIG_ENV, type FileJobData, type FileJobResult } from './ingest-jobs.js'

/**
 * `redis` is the worker-role connection (waits out outages); `lockRedis` is the file lock's own,
 * which fails fast, so that a holder cut off from Redis stops before its lock could expire.
 */
interface Sandbox { config: Config, logger: Logger, kafka: Kafka, redis: RedisClient, lockRedis: RedisClient }
let sandbox: Sandbox | undefined

/** How long an orphaned child lets its production unwind (release the file lock) before it exits anyway. */
const ORPHAN_EXIT_MS = 1000
/** Aborts the job in progress when the worker that forked this child is gone. */
const orphaned = new AbortController()
let current: Promise<unknown> | undefined

/**
 * The worker is gone, so nobody renews the job's lock, takes its result or stops this child. Abort
 * the production (no manifest is written after this point), give it a moment to release the file
 * lock, and exit whatever it is doing: the timer fires because the read loop awaits I/O per chunk.
 */
function onOrphaned (): void {
  if (orphaned.signal.aborted) return
  orphaned.abort(new CouponsError('INGEST_ABORTED', 'the worker that started this sandbox is gone', { retriable: true }))
  sandbox?.logger.warn('the ingest worker is gone (IPC channel closed); exiting')
  const exit = (): never => process.exit(1)
  setTimeout(exit, ORPHAN_EXIT_MS)
  current?.then(exit, exit)
}

// Only in a forked child: imported anywhere else (a test, a thread) there is no channel to watch.
if (process.send !== undefined) process.once('disconnect', onOrphaned)

/** Clients live as long as the child, which BullMQ keeps for the next job. */
function getSandbox (): Sandbox {
  if (sandbox !== undefined) return sandbox
  const raw = process.env[SANDBOX_CONFIG_ENV]
  if (raw === undefined) throw new Error(`${SANDBOX_CONFIG_ENV} is not set: this file is started by createIngestWorker`)
  const config = JSON.parse(raw) as Config
  const logger = createLogger(config.logLevel, 'ingest-processor')
  lowerPriority(config.pipelineNice, logger)
  sandbox = { config, logger, kafka: createKafka(config, logger, 'coupons-ingest'), redis: createRedis(config, 'worker', logger), lockRedis: createLockRedis(config, logger) }
  return sandbox
}

export default async function processFileJob (job: SandboxedJob<FileJobData, FileJobResult>, token?: string, signal?: AbortSignal): Promise<FileJobResult> {
  // The host may have died between handing over the job and this call.
  if (process.send !== undefined && !process.connected) onOrphaned()
  const work = produceJob(job, token, signal === undefined ? orphaned.signal : AbortSignal.any([signal, orphaned.signal]))
  current = work
  return await work
}

async function produceJob (job: SandboxedJob<FileJobData, FileJobResult>, token: string | undefined, signal: AbortSignal): Promise<FileJobResult> {
  const { config, logger, kafka, redis, lockRedis } = getSandbox()
  const { runId, file, runFiles } = job.data
  const segmentId = newRunId()
  // An attempt still 'running' in the data never finished: its worker or its sandbox died.
  const earlier = (job.data.attempts ?? []).map((attempt): IngestAttempt => attempt.outcome === 'running'
    ? { ...attempt, outcome: 'interrupted', error: attempt.error ?? 'its worker stopped before it finished' }
    : attempt)
  const attempt: IngestAttempt = { attempt: earlier.length + 1, segmentId, startedAt: new Date().toISOString(), finishedAt: null, outcome: 'running', error: null }
  const record = async (update: Partial<IngestAttempt>): Promise<void> => {
    Object.assign(attempt, update)
    await job.updateData({ runId, file, runFiles, segmentId: attempt.segmentId, attempts: [...earlier, attempt] })
  }
  const log = logger.child({ jobId: job.id, runId, file, segmentId, attempt: attempt.attempt })
  try {
    // Visible in the job before any record is written: a failed attempt names its segment too.
    await record({})
    // The API and the CLI refuse such a run up front; this catches one queued before KAFKA_PARTITIONS changed.
    if (!isFullRun(config, runFiles ?? [file])) checkRunPartitions(config, runFiles ?? [file], await livePartitions(redis, config.redisPrefix))
    const onWait = (): void => {
      log.info('another production of this file is running; waiting for it')
      Promise.resolve(job.log(`waiting for another production of ${file}`)).catch(() => {})
    }
    const jobLock = token === undefined || job.id === undefined ? null : jobLockKey(job.queueQualifiedName, job.id)
    const { manifest, adopted } = await withFileLock(lockRedis, redisKeys(config.redisPrefix).ingestLock(file), { signal, onWait }, async (lockedSignal, fileLock) => {
      // Under the file lock, so an earlier attempt still producing this file has finished (or died).
      // Every attempt records itself before it produces anything, so a job with no earlier attempt
      // cannot have a manifest yet: the first attempt (nearly every job) skips the lookup and its
      // short-lived consumer group, which costs a group join (3 s on a broker with Kafka's default
      // group.initial.rebalance.delay.ms).
      const existing = earlier.length === 0 ? null : await findManifest(kafka, config, runId, file, lockedSignal)
      if (existing !== null) return { manifest: existing, adopted: true }
      const produced = await produceFile({
        config,
        kafka,
        logger: log,
        file,
        runId,
        segmentId,
        signal: lockedSignal,
        onProgress: (progress) => { job.updateProgress(progress).catch(() => {}) },
        // Only the holder of the job's lock may publish: after a stalled check handed the job to
        // another worker, this attempt's manifest would be a second copy of the file. Both checks
        // go through the lock's fail-fast connection: a fence that hangs through an outage would
        // let the manifest out after the locks expired.
        fence: async () => {
          await fileLock.assertHeld()
          const jobLockHolder = jobLock === null
            ? null
            : await lockRedis.get(jobLock).catch((err: Error) => {
              throw new CouponsError('INGEST_LOCK_UNREACHABLE', `${file}: could not check job ${job.id}'s lock: ${err.message}; not writing a manifest`, { cause: err, retriable: true })
            })
          if (jobLock !== null && jobLockHolder !== token) {
            throw new CouponsError('INGEST_LOCK_LOST', `${file}: job ${job.id} is no longer this attempt's (its lock expired); not writing a manifest`, { retriable: true })
          }
        }
      })
      return { manifest: produced, adopted: false }
    })
    if (adopted) {
      log.warn({ adopted: manifest.segmentId }, 'an earlier attempt of this job already wrote the manifest; adopting it instead of producing the file again')
      const { fileBytes, lines, codes } = manifest
      await job.updateProgress({ percent: 100, bytesRead: fileBytes, bytesTotal: fileBytes, lines, codes } satisfies IngestProgress)
    }
    await record({ segmentId: manifest.segmentId, finishedAt: new Date().toISOString(), outcome: adopted ? 'adopted' : 'produced' })
    const { partitions: _partitions, type: _type, ...result } = manifest
    return result
  } catch (err) {
    // Nobody is left to hear about it; the process is about to exit.
    if (orphaned.signal.aborted) throw err
    const finishedAt = new Date().toISOString()
    // The worker is closing and cancelled this job: give it back to the queue without spending an
    // attempt (nothing was published; the next attempt is a fresh segment).
    if (signal.aborted) {
      await record({ finishedAt, outcome: 'interrupted', error: 'INGEST_ABORTED: the worker closed; the job went back to the queue' }).catch(() => {})
      await job.moveToWait(token)
      throw new WaitingError()
    }
    await record({ finishedAt, outcome: 'failed', error: isCouponsError(err) ? `${err.code}: ${err.message}` : (err as Error).message }).catch(() => {})
    // Logged by produceFile and by the worker's 'failed' listener; here it only gets its BullMQ meaning.
    if (isCouponsError(err) && !err.retriable) throw new UnrecoverableError(`${err.code}: ${err.message}`)
    if (isCouponsError(err)) throw new Error(`${err.code}: ${err.message}`)
    throw err
  }
}
