// The aggregator process (DESIGN section 5): follows `coupons.segments` from its beginning, and
// whenever a run has all its files and brings segments newer than the applied set, computes the
// valid set from the current segments and swaps it into Redis. Its only durable state is the
// topic and Redis' meta hash, so a restart (or a SIGKILL at any moment) rebuilds the same view
// and finishes what was complete but not applied.
import { randomBytes } from 'node:crypto'
import type { Admin, Consumer, Kafka } from 'kafkajs'
import type { Redis } from 'ioredis'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { createKafka, ensureTopics, topicNames } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { createRedis } from '../shared/redis.js'
import { decodeSegmentsRecord, type SegmentManifest } from '../shared/segments.js'
import { aggregateRun, type RunStats } from './aggregate-run.js'
import { MAX_FILES } from './partition-state.js'
import { SegmentsView, decideRuns, type ReadyRun } from './segments-view.js'
import { ValidSetSwap } from './valid-set-swap.js'

const RETRY_DELAY_MS = 5000
const MAX_RETRY_DELAY_MS = 60_000

/**
 * Delay before the next attempt after `failures` consecutive transient failures (Kafka or Redis
 * trouble): 5 s doubling up to 60 s. Such failures are retried without a cap: recording a
 * complete run as failed would block it for good, and the outage is not the run's fault.
 */
export function retryDelayMs (failures: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, RETRY_DELAY_MS * 2 ** Math.max(0, Math.min(failures - 1, 10)))
}

export interface AggregatorOptions {
  config: Config
  logger: Logger
  /** called after each run the aggregator finishes (tests, benchmarks) */
  onRun?: (stats: RunStats) => void
}

export class Aggregator {
  readonly #config: Config
  readonly #logger: Logger
  readonly #onRun: AggregatorOptions['onRun']
  readonly #view = new SegmentsView()
  readonly #finished = new Set<string>()
  readonly #abort = new AbortController()
  #kafka: Kafka | null = null
  #admin: Admin | null = null
  #redis: Redis | null = null
  #swap: ValidSetSwap | null = null
  #consumer: Consumer | null = null
  #groupId: string | null = null
  #failures = 0
  #caughtUp = false
  #dirty = false
  #loop: Promise<void> | null = null
  #retryTimer: NodeJS.Timeout | null = null
  #closing: Promise<void> | null = null

  constructor (options: AggregatorOptions) {
    this.#config = options.config
    this.#logger = options.logger.child({ component: 'aggregator' })
    this.#onRun = options.onRun
  }

  async start (): Promise<void> {
    const config = this.#config
    if (config.couponFiles.length > MAX_FILES) {
      throw new CouponsError('CONFIG_INVALID', `the aggregator supports at most ${MAX_FILES} COUPON_FILES, got ${config.couponFiles.length}`)
    }
    const log = this.#logger
    this.#redis = createRedis(config.redisUrl, 'worker', log)
    this.#swap = new ValidSetSwap(this.#redis, config.redisPrefix, log)
    this.#kafka = createKafka(config, log, 'coupons-aggregator')
    this.#admin = this.#kafka.admin()
    await this.#admin.connect()

    const leftovers = await this.#swap.deleteLeftovers()
    if (leftovers.length > 0) log.warn({ keys: leftovers }, 'deleted staging or retired sets left by an interrupted swap')

    const topic = topicNames(config).segments
    await ensureTopics(this.#admin, [{ topic, numPartitions: 1 }])
    const [end] = await this.#admin.fetchTopicOffsets(topic)
    const catchUpTo = BigInt(end.high) - 1n
    this.#caughtUp = catchUpTo < BigInt(end.low)
    log.info({ generation: await this.#swap.generation(), segmentsRecords: end.high }, 'aggregator starting: replaying coupons.segments')

    // A throwaway group that never commits: every start replays the (small) topic from its start.
    this.#groupId = `coupons-aggregator-${randomBytes(6).toString('hex')}`
    this.#consumer = this.#kafka.consumer({ groupId: this.#groupId, allowAutoTopicCreation: false })
    await this.#consumer.connect()
    await this.#consumer.subscribe({ topic, fromBeginning: true })
    await this.#consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        try {
          const record = decodeSegmentsRecord(message.value)
          const first = this.#view.apply(record, BigInt(message.offset))
          if (first !== undefined && record.type === 'segment') {
            log.warn({ runId: record.runId, file: record.file, ignored: record.segmentId, offset: message.offset, kept: first.manifest.segmentId, keptOffset: first.offset.toString() },
              'ignoring a second manifest of a file in one run (from an attempt that lost its job); the first one stands')
          }
        } catch (err) {
          log.error({ err, offset: message.offset }, 'skipping an unreadable coupons.segments record')
        }
        if (!this.#caughtUp && BigInt(message.offset) >= catchUpTo) {
          this.#caughtUp = true
          log.info({ readyRuns: this.#view.readyRuns().length }, 'coupons.segments replayed')
        }
        if (this.#caughtUp) this.#schedule()
      }
    })
    if (this.#caughtUp) this.#schedule()
  }

  #schedule (): void {
    if (this.#closing !== null) return
    this.#dirty = true
    this.#loop ??= this.#evaluateLoop().finally(() => { this.#loop = null })
  }

  async #evaluateLoop (): Promise<void> {
    while (this.#dirty && this.#closing === null) {
      this.#dirty = false
      try {
        await this.#evaluate()
        this.#failures = 0
      } catch (err) {
        if (this.#abort.signal.aborted) return
        const delayMs = retryDelayMs(++this.#failures)
        this.#logger.error({ err, failures: this.#failures, retryInMs: delayMs }, `aggregation failed; retrying in ${delayMs / 1000} s`)
        this.#retryTimer = setTimeout(() => { this.#retryTimer = null; this.#schedule() }, delayMs)
        return
      }
    }
  }

  async #evaluate (): Promise<void> {
    const swap = this.#swap as ValidSetSwap
    const applied = await swap.applied()
    const appliedOffset = applied.segmentsOffset
    const ready: ReadyRun[] = []
    for (const runId of this.#view.readyRuns()) {
      if (!this.#finished.has(runId) && await swap.hasResult(runId)) this.#finished.add(runId)
      ready.push({ runId, newestOffset: this.#view.newestOffset(runId) as bigint })
    }
    const decision = decideRuns(ready, appliedOffset, this.#finished)
    for (const runId of decision.supersede) {
      await swap.recordResult(runId, { state: 'superseded', error: `its segments are already in the set applied by run ${applied.generation}` })
      this.#finished.add(runId)
      this.#logger.info({ runId, generation: applied.generation }, 'run superseded: its segments are already applied')
    }
    if (decision.apply !== null) {
      await this.#applyRun(decision.apply)
      // Older ready runs are superseded now.
      this.#dirty = true
    }
  }

  async #applyRun (runId: string): Promise<void> {
    const config = this.#config
    const swap = this.#swap as ValidSetSwap
    try {
      const segments: SegmentManifest[] = []
      const missing: string[] = []
      let segmentsOffset = -1n
      for (const file of config.couponFiles) {
        const current = this.#view.current(file)
        if (current === undefined) {
          missing.push(file)
          continue
        }
        segments.push(current.manifest)
        if (current.offset > segmentsOffset) segmentsOffset = current.offset
      }
      if (missing.length > 0) {
        // A set decided without some files would be published as complete (and answer 404 where
        // the API should answer 503), so a partial set is never swapped in.
        throw new CouponsError('AGGREGATOR_FILES_MISSING',
          `${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no complete segment yet; ` +
          'ingest them (POST /admin/ingest) before a partial run can be applied')
      }
      const stats = await aggregateRun({
        config,
        kafka: this.#kafka as Kafka,
        admin: this.#admin as Admin,
        swap,
        logger: this.#logger,
        runId,
        segments,
        segmentsOffset,
        signal: this.#abort.signal
      })
      if (stats.outcome.state === 'superseded') {
        await swap.recordResult(runId, { state: 'superseded', error: `a set at least as fresh was applied first (run ${stats.outcome.generation})` })
      }
      this.#finished.add(runId)
      this.#onRun?.(stats)
    } catch (err) {
      // Transient trouble (Kafka or Redis) is retried by the loop, with backoff, for as long as
      // it lasts; only an error that a retry cannot fix fails the run for good.
      if (this.#abort.signal.aborted || !isCouponsError(err) || err.retriable) throw err
      await swap.clearStaging(runId)
      await swap.recordResult(runId, { state: 'failed', error: `${err.code}: ${err.message}` })
      this.#finished.add(runId)
      this.#logger.error({ err, runId }, 'run failed; nothing was swapped')
    }
  }

  /** Stops following the topic, abandons a run in progress (nothing partial is live), closes clients. */
  async close (): Promise<void> {
    this.#closing ??= this.#close()
    return await this.#closing
  }

  async #close (): Promise<void> {
    this.#abort.abort(new CouponsError('AGGREGATOR_CLOSING', 'the aggregator is closing', { retriable: true }))
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer)
    const steps: Array<() => Promise<unknown>> = [
      async () => await this.#consumer?.disconnect(),
      async () => await this.#loop?.catch(() => {}),
      // The group never committed anything, but it would linger until Kafka expires it.
      async () => { if (this.#groupId !== null) await this.#admin?.deleteGroups([this.#groupId]) },
      async () => await this.#admin?.disconnect(),
      async () => await this.#redis?.quit()
    ]
    for (const step of steps) {
      try {
        await step()
      } catch (err) {
        this.#logger.warn({ err }, 'a step of closing the aggregator failed')
      }
    }
  }
}
