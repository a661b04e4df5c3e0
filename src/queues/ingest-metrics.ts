// The ingest's metrics, kept by the process that hosts the workers (the api, or `coupons worker`):
// the sandboxed children report progress to their BullMQ job, BullMQ hands each report to the
// worker's 'progress' event here, and the differences between reports become the counters.
import type { Job, Worker } from 'bullmq'
import { Value } from 'typebox/value'
import { Counter, Gauge, type Registry } from 'prom-client'
import { IngestProgress } from '../shared/run-contract.js'
import type { FileJobData, FileJobResult } from './ingest-jobs.js'

interface Seen { attempt: number, bytesRead: number, codes: number }

export class IngestMetrics {
  readonly #bytes: Counter<'file'>
  readonly #codes: Counter<'file'>
  readonly #progress: Gauge<'file'>
  readonly #jobs: Counter<'file' | 'outcome'>
  /** the last report of each active job */
  readonly #seen = new Map<string, Seen>()

  constructor (registry: Registry) {
    this.#bytes = new Counter({ name: 'coupons_ingest_bytes_total', help: 'Compressed bytes of coupon files read by the ingest (retried attempts count again)', labelNames: ['file'], registers: [registry] })
    this.#codes = new Counter({ name: 'coupons_ingest_codes_total', help: 'Candidate codes produced to Kafka by the ingest (retried attempts count again)', labelNames: ['file'], registers: [registry] })
    this.#progress = new Gauge({ name: 'coupons_ingest_progress_ratio', help: 'Progress of the latest ingest job of each file, 0 to 1', labelNames: ['file'], registers: [registry] })
    this.#jobs = new Counter({ name: 'coupons_ingest_jobs_total', help: 'Ingest file jobs finished, by outcome (completed, failed: its last attempt failed)', labelNames: ['file', 'outcome'], registers: [registry] })
  }

  /** Follows the jobs of a worker of the ingest-files queue. */
  watch (worker: Worker<unknown, FileJobResult>): void {
    worker.on('progress', (job, progress) => { this.#onProgress(job as Job<FileJobData>, progress) })
    worker.on('completed', (job) => { this.#onFinished(job as Job<FileJobData>, 'completed') })
    worker.on('failed', (job) => {
      if (job === undefined) return
      // Only a job that will not be retried is failed; its next attempt reports from zero again.
      const final = job.attemptsMade >= (job.opts.attempts ?? 1) || job.finishedOn !== undefined
      if (final) this.#onFinished(job as Job<FileJobData>, 'failed')
    })
  }

  #onProgress (job: Job<FileJobData>, progress: unknown): void {
    if (job.id === undefined || !Value.Check(IngestProgress, progress)) return
    const file = job.data.file
    const attempt = job.attemptsMade
    const last = this.#seen.get(job.id)
    // A new attempt (or a report older than the last one) starts from zero.
    const base = last !== undefined && last.attempt === attempt && progress.bytesRead >= last.bytesRead ? last : { bytesRead: 0, codes: 0 }
    this.#bytes.inc({ file }, progress.bytesRead - base.bytesRead)
    this.#codes.inc({ file }, Math.max(0, progress.codes - base.codes))
    this.#progress.set({ file }, progress.percent / 100)
    this.#seen.set(job.id, { attempt, bytesRead: progress.bytesRead, codes: progress.codes })
  }

  #onFinished (job: Job<FileJobData>, outcome: 'completed' | 'failed'): void {
    if (job.id !== undefined) this.#seen.delete(job.id)
    this.#jobs.inc({ file: job.data.file, outcome })
    if (outcome === 'completed') this.#progress.set({ file: job.data.file }, 1)
  }
}
