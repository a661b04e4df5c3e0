// The aggregator process (DESIGN section 5): follows `coupons.segments` from its beginning, and
// whenever a run has all its files, computes the valid set from the current segments and swaps
// it into Redis. Its only durable state is the topic and Redis' meta hash, so a restart (or a
// SIGKILL at any moment) rebuilds the same view and finishes what was complete but not applied.
import { randomBytes } from 'node:crypto'
import type { Admin, Consumer, Kafka } from 'kafkajs'
import type { Redis } from 'ioredis'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { createKafka, ensureTopics, topicNames } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { createRedis } from '../shared/redis.js'
import { decodeSegmentsRecord, type SegmentManifest } from '../shared/segments.js'
import { aggregateRun, type PausePoint, type RunStats } from './aggregate-run.js'
import { MAX_FILES } from './partition-state.js'
import { SegmentsView, decideRuns } from './segments-view.js'
import { ValidSetSwap } from './valid-set-swap.js'

const RETRY_DELAY_MS = 5000
/** attempts of a run whose failure may be transient (Kafka or Redis trouble) before it is failed */
const RUN_ATTEMPTS = 3

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
  readonly #attempts = new Map<string, number>()
  readonly #abort = new AbortController()
  #kafka: Kafka | null = null
  #admin: Admin | null = null
  #redis: Redis | null = null
  #swap: ValidSetSwap | null = null
  #consumer: Consumer | null = null
  #caughtUp = false
  #dirty = false
  #loop: Promise<void> | null = null
  #retryTimer: NodeJS.Timeout | null = null
  #paused = false
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
    this.#consumer = this.#kafka.consumer({ groupId: `coupons-aggregator-${randomBytes(6).toString('hex')}`, allowAutoTopicCreation: false })
    await this.#consumer.connect()
    await this.#consumer.subscribe({ topic, fromBeginning: true })
    await this.#consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        try {
          this.#view.apply(decodeSegmentsRecord(message.value))
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
      } catch (err) {
        if (this.#abort.signal.aborted) return
        this.#logger.error({ err }, `aggregation failed; retrying in ${RETRY_DELAY_MS / 1000} s`)
        this.#retryTimer = setTimeout(() => { this.#retryTimer = null; this.#schedule() }, RETRY_DELAY_MS)
        return
      }
    }
  }

  async #evaluate (): Promise<void> {
    const swap = this.#swap as ValidSetSwap
    const generation = await swap.generation()
    const ready = this.#view.readyRuns()
    for (const runId of ready) {
      if (!this.#finished.has(runId) && await swap.hasResult(runId)) this.#finished.add(runId)
    }
    const decision = decideRuns(ready, generation, this.#finished)
    for (const runId of decision.supersede) {
      await swap.recordResult(runId, { state: 'superseded', error: `run ${generation} was applied first` })
      this.#finished.add(runId)
      this.#logger.info({ runId, generation }, 'run superseded by a newer applied run')
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
    const segments: SegmentManifest[] = []
    const missing: string[] = []
    for (const file of config.couponFiles) {
      const manifest = this.#view.current(file)
      if (manifest === undefined) missing.push(file)
      else segments.push(manifest)
    }
    if (missing.length > 0) this.#logger.warn({ runId, missing }, 'some configured files were never ingested; deciding without them')
    try {
      const stats = await aggregateRun({
        config,
        kafka: this.#kafka as Kafka,
        admin: this.#admin as Admin,
        swap,
        logger: this.#logger,
        runId,
        segments,
        signal: this.#abort.signal,
        pause: config.aggregatorPauseAt === null ? undefined : async (point) => { await this.#pause(point) }
      })
      if (stats.outcome.state === 'superseded') {
        await swap.recordResult(runId, { state: 'superseded', error: `run ${stats.outcome.generation} was applied first` })
      }
      this.#finished.add(runId)
      this.#onRun?.(stats)
    } catch (err) {
      if (this.#abort.signal.aborted) throw err
      const attempts = (this.#attempts.get(runId) ?? 0) + 1
      this.#attempts.set(runId, attempts)
      const transient = !isCouponsError(err) || err.retriable
      if (transient && attempts < RUN_ATTEMPTS) throw err
      await swap.clearStaging(runId)
      const reason = isCouponsError(err) ? `${err.code}: ${err.message}` : (err as Error).message
      await swap.recordResult(runId, { state: 'failed', error: reason })
      this.#finished.add(runId)
      this.#logger.error({ err, runId, attempts }, 'run failed; nothing was swapped')
    }
  }

  async #pause (point: PausePoint): Promise<void> {
    if (point !== this.#config.aggregatorPauseAt || this.#paused) return
    this.#paused = true
    this.#logger.warn({ pauseAt: point }, 'aggregator paused (AGGREGATOR_PAUSE_AT)')
    const signal = this.#abort.signal
    await new Promise<void>((resolve, reject) => {
      signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
    })
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
