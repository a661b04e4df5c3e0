// The BullMQ side of ingestion (DESIGN section 8), named in one place: two queues under the
// configured Redis prefix, the jobs they hold and the options every job gets.
//
// - `ingest-files`: one job per file of a run, processed in a sandbox (ingest-processor.ts);
// - `ingest-runs`: the parent job of each run's flow (completes when its files do) and the small
//   `start-run` jobs that the daily scheduler emits, which a worker turns into a run.
import type { JobsOptions } from 'bullmq'
import type { Config } from '../shared/config.js'
import type { IngestAttempt, RunSource } from '../shared/run-contract.js'
import type { SegmentManifest } from '../shared/segments.js'

export const FILES_QUEUE = 'ingest-files'
export const RUNS_QUEUE = 'ingest-runs'
export const FILE_JOB = 'file'
export const RUN_JOB = 'run'
export const START_RUN_JOB = 'start-run'
export const DAILY_SCHEDULER_ID = 'daily-ingest'

/** Data of a run's parent job. */
export interface RunJobData {
  runId: string
  source: RunSource
  requestedAt: string
  files: string[]
}

/**
 * Data of a file job. Each attempt sets segmentId before it produces anything and records itself
 * in attempts (started, then produced, adopted or failed), so the run view can list them.
 */
export interface FileJobData {
  runId: string
  file: string
  /**
   * Every file of the job's run, so that the sandbox knows whether it is a full run (which may
   * change the partition count) without reading the parent job. Absent from jobs queued before it
   * existed: those count as partial runs.
   */
  runFiles?: string[]
  segmentId?: string
  attempts?: IngestAttempt[]
}

/** Data of a scheduler's job: start a run of every configured file. */
export interface StartRunJobData {
  source: RunSource
}

/** Return value of a file job: the manifest without its per-partition detail. */
export type FileJobResult = Omit<SegmentManifest, 'partitions' | 'type'>

/** Deterministic, so a run's file jobs can be found from the run id and its file names. */
export function fileJobId (runId: string, file: string): string {
  return `${runId}.${file}`
}

/**
 * The Redis key of an active job's lock (BullMQ's layout: `<prefix>:<queue>:<jobId>:lock`, holding
 * the token its worker was given). It exists while a live worker renews it: a sandbox checks it
 * before writing a manifest, and the run view calls an active job without it stalled.
 */
export function jobLockKey (queueQualifiedName: string, jobId: string): string {
  return `${queueQualifiedName}:${jobId}:lock`
}

// Finished jobs are the history shown by /admin/runs: kept a month, at most a few thousand.
const KEEP = { age: 30 * 24 * 3600, count: 5000 }
/** First retry after about this long, then doubling (a Kafka or Redis outage has time to end). */
export const RETRY_DELAY_MS = 5000

export function fileJobOptions (config: Pick<Config, 'ingestAttempts'>, runId: string, file: string): JobsOptions {
  return {
    jobId: fileJobId(runId, file),
    attempts: config.ingestAttempts,
    backoff: { type: 'exponential', delay: RETRY_DELAY_MS },
    // One file that cannot be ingested fails its run: the aggregator never applies half a run.
    failParentOnFailure: true,
    removeOnComplete: KEEP,
    removeOnFail: KEEP
  }
}

export function runJobOptions (runId: string): JobsOptions {
  return { jobId: runId, removeOnComplete: KEEP, removeOnFail: KEEP }
}

/**
 * The file worker's job lock: renewed by the worker (not the sandbox) every half of it, so it
 * expires this long at most after the worker dies. Short, because a dead worker's run is shown as
 * stalled (ingest-runs.ts) and retried only once the lock is gone; long enough that a busy host's
 * event loop never misses a renewal.
 */
export const LOCK_DURATION_MS = 20_000
/** How often BullMQ looks for active jobs without a lock and gives them back to the queue. */
export const STALLED_INTERVAL_MS = 10_000

/** Environment variable through which a worker hands its config to its sandboxed processors. */
export const SANDBOX_CONFIG_ENV = 'COUPONS_SANDBOX_CONFIG'
