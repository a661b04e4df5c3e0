// Runs as the API and the scheduler see them (DESIGN section 8): a run is a BullMQ flow, a parent
// job per run with one child job per file. Starting a run first appends its RunRecord to
// `coupons.segments` (so the aggregator knows which files make it complete), then adds the flow.
import { FlowProducer, Job, Queue } from 'bullmq'
import { Type } from 'typebox'
import { Value } from 'typebox/value'
import type { Kafka } from 'kafkajs'
import { publishRunRecord } from '../ingest/run-record.js'
import { checkRunFiles, type Config } from '../shared/config.js'
import { createKafka } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { createRedis, type RedisClient } from '../shared/redis.js'
import { redisKeys, RUN_RESULT } from '../shared/redis-keys.js'
import {
  AppliedSegment, IngestAttempt, IngestProgress, type Run, type RunFile, RunResult, type RunSource, type Schedule, type StartedRun
} from '../shared/run-contract.js'
import { newRunId } from '../shared/segments.js'
import {
  DAILY_SCHEDULER_ID, FILE_JOB, FILES_QUEUE, fileJobId, fileJobOptions, jobLockKey, RETRY_DELAY_MS, RUN_JOB, RUNS_QUEUE,
  runJobOptions, START_RUN_JOB, type FileJobData, type FileJobResult, type RunJobData, type StartRunJobData
} from './ingest-jobs.js'

export interface RunStarter { config: Config, kafka: Kafka, flows: FlowProducer }

/** Publishes the run record, then adds the run's flow. Shared by IngestRuns and the scheduler's jobs. */
export async function startRun ({ config, kafka, flows }: RunStarter, files: string[], source: RunSource): Promise<StartedRun> {
  checkRunFiles(config, files)
  const runId = newRunId()
  const requestedAt = new Date().toISOString()
  await publishRunRecord(kafka, config, { type: 'run', runId, files, requestedAt, source })
  const data: RunJobData = { runId, source, requestedAt, files }
  await flows.add({
    name: RUN_JOB,
    queueName: RUNS_QUEUE,
    data,
    opts: runJobOptions(runId),
    children: files.map((file) => ({
      name: FILE_JOB,
      queueName: FILES_QUEUE,
      data: { runId, file, runFiles: files } satisfies FileJobData,
      opts: fileJobOptions(config, runId, file)
    }))
  })
  return { runId, jobs: files.map((file) => ({ id: fileJobId(runId, file), file })) }
}

const RUN_STATES = ['active', 'waiting', 'waiting-children', 'prioritized', 'delayed', 'completed', 'failed'] as const
/** The state shown for an active file job whose worker is gone (its lock expired), and for its run. */
const STALLED = 'stalled'

export class IngestRuns {
  readonly #config: Config
  readonly #logger: Logger
  readonly #redis: RedisClient
  readonly #kafka: Kafka
  readonly #runs: Queue<RunJobData | StartRunJobData>
  readonly #files: Queue<FileJobData, FileJobResult>
  readonly #flows: FlowProducer
  #closing: Promise<void> | undefined

  constructor (options: { config: Config, logger: Logger }) {
    const { config, logger } = options
    this.#config = config
    this.#logger = logger
    this.#redis = createRedis(config, 'producer', logger)
    this.#kafka = createKafka(config, logger, 'coupons-ingest-runs')
    const { bullPrefix: prefix } = redisKeys(config.redisPrefix)
    this.#runs = new Queue(RUNS_QUEUE, { connection: this.#redis, prefix })
    this.#files = new Queue(FILES_QUEUE, { connection: this.#redis, prefix })
    this.#flows = new FlowProducer({ connection: this.#redis, prefix })
    const onError = (err: Error): void => { logger.warn({ err }, 'ingest queue error') }
    this.#runs.on('error', onError)
    this.#files.on('error', onError)
    this.#flows.on('error', onError)
  }

  /** Upserts the daily job scheduler, or removes it when INGEST_CRON=off; safe to call at every start. */
  async init (): Promise<void> {
    const { ingestCron, ingestTz } = this.#config
    if (ingestCron === null) {
      await this.#runs.removeJobScheduler(DAILY_SCHEDULER_ID)
      this.#logger.info('daily ingest is off')
      return
    }
    await this.#runs.upsertJobScheduler(DAILY_SCHEDULER_ID, { pattern: ingestCron, tz: ingestTz }, {
      name: START_RUN_JOB,
      data: { source: 'schedule' } satisfies StartRunJobData,
      // A Kafka or Redis blip at start time must not skip the day.
      opts: { attempts: this.#config.ingestAttempts, backoff: { type: 'exponential', delay: RETRY_DELAY_MS }, removeOnComplete: true, removeOnFail: { count: 100 } }
    })
    this.#logger.info({ pattern: ingestCron, tz: ingestTz }, 'daily ingest scheduled')
  }

  startRun (files: string[], source: RunSource): Promise<StartedRun> {
    return startRun({ config: this.#config, kafka: this.#kafka, flows: this.#flows }, files, source)
  }

  async getRun (runId: string): Promise<Run | null> {
    const parent = await Job.fromId<RunJobData>(this.#runs, runId)
    if (parent === undefined || parent.name !== RUN_JOB) return null
    return this.#view(parent)
  }

  /** Newest first (run ids sort by time). */
  async listRuns (limit = 20): Promise<Run[]> {
    const jobs = await this.#runs.getJobs([...RUN_STATES], 0, limit - 1, false)
    const runs = jobs
      .filter((job): job is Job<RunJobData> => job?.name === RUN_JOB)
      .sort((a, b) => (a.id! < b.id! ? 1 : a.id! > b.id! ? -1 : 0))
      .slice(0, limit)
    return Promise.all(runs.map((job) => this.#view(job)))
  }

  /** File jobs by state. */
  async counts (): Promise<Record<string, number>> {
    return this.#files.getJobCounts('active', 'waiting', 'prioritized', 'delayed', 'completed', 'failed')
  }

  async schedule (): Promise<Schedule> {
    const tz = this.#config.ingestTz
    const scheduler = await this.#runs.getJobScheduler(DAILY_SCHEDULER_ID)
    if (scheduler === undefined) return { pattern: null, tz, next: null }
    return {
      pattern: scheduler.pattern ?? null,
      tz: scheduler.tz ?? tz,
      next: scheduler.next === undefined ? null : new Date(scheduler.next).toISOString()
    }
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([this.#runs.close(), this.#files.close(), this.#flows.close()])
      this.#redis.disconnect()
    })()
    return this.#closing
  }

  async #view (parent: Job<RunJobData>): Promise<Run> {
    const { runId, source, requestedAt, files } = parent.data
    const [state, result] = await Promise.all([parent.getState(), this.#result(runId)])
    const children = await Promise.all(files.map((file) => this.#fileView(runId, file, result)))
    // A run waits for its files; when one of them lost its worker, that is the run's news.
    const stalled = state === 'waiting-children' && children.some((child) => child.state === STALLED)
    return {
      runId,
      state: stalled ? STALLED : state,
      source,
      requestedAt,
      finishedAt: parent.finishedOn === undefined ? null : new Date(parent.finishedOn).toISOString(),
      files: children,
      result
    }
  }

  async #fileView (runId: string, file: string, result: RunResult | null): Promise<RunFile> {
    const jobId = fileJobId(runId, file)
    const appliedSegmentId = result?.segments.find((segment) => segment.file === file)?.segmentId ?? null
    const job = await Job.fromId<FileJobData, FileJobResult>(this.#files, jobId)
    if (job === undefined) {
      return { file, jobId, state: 'unknown', progress: null, attemptsMade: 0, failedReason: null, segmentId: null, appliedSegmentId, attempts: [] }
    }
    // Progress is whatever the job last reported; anything but an IngestProgress shows as none.
    const progress = Value.Check(IngestProgress, job.progress) ? job.progress : null
    const state = await job.getState()
    // An active job whose lock is gone has no live worker: its progress is not moving.
    const lockHeld = state !== 'active' || await this.#redis.exists(jobLockKey(this.#files.qualifiedName, jobId)) === 1
    const attempts = Array.isArray(job.data.attempts) ? job.data.attempts.filter((attempt) => Value.Check(IngestAttempt, attempt)) : []
    return {
      file,
      jobId,
      state: lockHeld ? state : STALLED,
      progress,
      attemptsMade: job.attemptsMade,
      // BullMQ keeps the last failure's reason after a retry succeeds; it is news only for a failed job.
      failedReason: state === 'failed' && job.failedReason !== undefined && job.failedReason !== '' ? job.failedReason : null,
      segmentId: job.returnvalue?.segmentId ?? job.data.segmentId ?? null,
      appliedSegmentId,
      attempts
    }
  }

  async #result (runId: string): Promise<RunResult | null> {
    const hash = await this.#redis.hgetall(redisKeys(this.#config.redisPrefix).runResult(runId))
    const state = hash[RUN_RESULT.state]
    if (state !== 'applied' && state !== 'failed' && state !== 'superseded') return null
    const number = (value: string | undefined): number | null => value === undefined || value === '' ? null : Number(value)
    return {
      state,
      appliedAt: hash[RUN_RESULT.appliedAt] || null,
      validCount: number(hash[RUN_RESULT.validCount]),
      swapMs: number(hash[RUN_RESULT.swapMs]),
      error: hash[RUN_RESULT.error] || null,
      segments: appliedSegments(hash[RUN_RESULT.segments]),
      deciders: deciders(hash[RUN_RESULT.deciders]),
      attempts: number(hash[RUN_RESULT.attempts])
    }
  }
}

/** The deciders field of a run result; {} when absent (not applied, or written before it existed) or unreadable. */
function deciders (json: string | undefined): Record<string, number[]> {
  if (json === undefined || json === '') return {}
  try {
    const parsed: unknown = JSON.parse(json)
    return Value.Check(RunResult.properties.deciders, parsed) ? parsed : {}
  } catch {
    return {}
  }
}

/** The segments field of a run result; [] when absent (results written before it existed) or unreadable. */
function appliedSegments (json: string | undefined): AppliedSegment[] {
  if (json === undefined || json === '') return []
  try {
    const parsed: unknown = JSON.parse(json)
    return Value.Check(Type.Array(AppliedSegment), parsed) ? parsed : []
  } catch {
    return []
  }
}
