// The aggregator (DESIGN section 5, issue 14). Any number of instances form one long-lived Kafka
// consumer group (AGGREGATOR_GROUP_ID) over coupons.segments and the data topics; the
// co-partitioned assigner gives each instance partition p of every data topic together, and one
// instance, the coordinator, the single partition of coupons.segments.
// - The coordinator replays coupons.segments (from the last point still needed, kept in the meta
//   hash) and, whenever a run has all its files and brings segments newer than the applied set,
//   writes the run's plan (the current segment of every file) to Redis and announces it.
// - Every instance, the coordinator included, decides the plan's partitions it owns and stages
//   them (decide-partitions.ts). Whoever stages the last one swaps; the swap script checks that
//   every partition is staged with verified counts, so the whole set or nothing goes live, once.
// - When an instance dies, Kafka moves its partitions to the others, which decide what is not
//   staged yet; when the coordinator dies, another one takes coupons.segments over and replays it.
// - A run's transient failures are retried with backoff up to AGGREGATOR_MAX_ATTEMPTS; then, or at
//   once for an error that a retry cannot fix (or that the code does not know), the run is
//   recorded failed with its last error and the live set is left alone.
// The only durable state is the topics and Redis, so a restart (or a SIGKILL at any moment) finds
// the same plan and the staged partitions, and finishes what was complete but not applied.
import { randomBytes } from 'node:crypto'
import type { Admin, Batch, Consumer, Kafka } from 'kafkajs'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { createKafka, ensureTopics, topicNames, topicOptions } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { createRedis, type RedisClient } from '../shared/redis.js'
import { decodeSegmentsRecord } from '../shared/segments.js'
import { coPartitionedAssigner } from './co-partition-assigner.js'
import { decidePartitions, type PartitionsStats } from './decide-partitions.js'
import { MAX_FILES } from './partition-state.js'
import { PartitionReader, messagesFrom } from './partition-reader.js'
import { decodePlan, encodePlan, planIdOf, planRun, type RunPlan } from './run-plan.js'
import { SegmentsView, decideRuns, type ReadyRun } from './segments-view.js'
import { ValidSetSwap, type SegmentUsed, type SwapOutcome } from './valid-set-swap.js'

const MAX_RETRY_DELAY_MS = 60_000
/** How often an instance looks at the plan without being told (a lost message, a dead swapper). */
const PLAN_POLL_MS = 1000
/** An idle group consumer polls this often; a read waits at most this long for its first batch. */
const MAX_WAIT_TIME_MS = 250
const SESSION_TIMEOUT_MS = 10_000
/** How long a run's files may take to complete: a run requested longer ago is not replayed for. */
const RUN_WAIT_MS = 24 * 3600 * 1000
/** How long closing waits for the work in progress to stop. */
const CLOSE_WAIT_MS = 5000

/**
 * Delay before the next attempt after `failures` consecutive transient failures: `baseMs` doubling
 * up to 60 s.
 */
export function retryDelayMs (baseMs: number, failures: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** Math.max(0, Math.min(failures - 1, 20)))
}

/**
 * Whether retrying can fix an error: a CouponsError says so itself; KafkaJS marks its transient
 * errors; a Redis connection lost mid-command is transient. Anything else is a bug or bad data
 * until shown otherwise, and a retry would only repeat it.
 */
export function isRetriable (err: unknown): boolean {
  if (isCouponsError(err)) return err.retriable
  if (typeof err !== 'object' || err === null) return false
  const { name, retriable, message } = err as { name?: unknown, retriable?: unknown, message?: unknown }
  // KafkaJS's own retries ran out (about 30 s of a broker outage): an outage, not a bug.
  if (name === 'KafkaJSNumberOfRetriesExceeded') return true
  if (typeof name === 'string' && name.startsWith('KafkaJS')) return retriable === true
  // Redis refusing for a while: out of memory, loading, a cluster failing over (ioredis gives up
  // its redirections within about 2 s, sooner than a failover ends).
  if (name === 'ReplyError') return typeof message === 'string' && TRANSIENT_REDIS_REPLIES.test(message)
  if (name === 'ClusterAllFailedError') return true
  return name === 'MaxRetriesPerRequestError' || message === 'Connection is closed.' ||
    (typeof message === 'string' && message.startsWith('Too many Cluster redirections'))
}

const TRANSIENT_REDIS_REPLIES = /^(OOM|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY) /

export interface RunStats {
  runId: string
  outcome: Exclude<SwapOutcome, { state: 'incomplete' | 'finished' }>
  /** this instance's share */
  partitions: PartitionsStats
  ms: { read: number, decide: number, stage: number, swap: number, cleanup: number, total: number }
}

export interface AggregatorOptions {
  config: Config
  logger: Logger
  /** called after each run this instance swapped (applied or superseded): metrics, tests, benchmarks */
  onRun?: (stats: RunStats) => void
  /** called after this instance staged its partitions of a run */
  onPartitions?: (runId: string, stats: PartitionsStats) => void
  /** called when this instance recorded a run failed */
  onRunFailed?: (runId: string) => void
  /** called at each (re)balance with the data partitions this instance owns now, and whether it coordinates */
  onAssignment?: (partitions: number[], coordinator: boolean) => void
  /** the group consumer stopped for good (a non-retriable Kafka error): the process should exit */
  onFatal?: (err: Error) => void
}

/** What the coordinator knows while it holds coupons.segments. */
interface Coordination {
  view: SegmentsView
  /** offset of the next coupons.segments record to apply; null until the replay start is known */
  next: bigint | null
  catchUpTo: bigint
  caughtUp: boolean
  /** runs with a result, or covered by the applied set when replayed: never looked at again */
  finished: Set<string>
}

export class Aggregator {
  /** this instance's name in staged records and logs */
  readonly member: string
  readonly #config: Config
  readonly #logger: Logger
  readonly #options: AggregatorOptions
  readonly #closing = new AbortController()
  readonly #segmentsTopic: string
  readonly #dataTopics: string[]
  #kafka: Kafka | null = null
  #admin: Admin | null = null
  #redis: RedisClient | null = null
  #subscriber: RedisClient | null = null
  #swap: ValidSetSwap | null = null
  #consumer: Consumer | null = null
  #reader: PartitionReader | null = null
  /** aborted at every rebalance: work on partitions of the previous assignment stops */
  #assignment = new AbortController()
  #owned: number[] = []
  #coordination: Coordination | null = null
  /** runId -> failed attempts of this instance */
  readonly #failures = new Map<string, number>()
  /** runs this instance gave up on (their failure is recorded, or will be once Redis answers) */
  readonly #gaveUp = new Set<string>()
  #work: Promise<void> | null = null
  #workAgain = false
  #workPlan: { planId: string, controller: AbortController } | null = null
  #evaluation: Promise<void> | null = null
  #evaluateAgain = false
  #evaluateFailures = 0
  readonly #timers = new Set<NodeJS.Timeout>()
  #closed: Promise<void> | null = null

  constructor (options: AggregatorOptions) {
    this.#config = options.config
    this.#options = options
    this.member = `${options.config.instanceId}-${process.pid}-${randomBytes(2).toString('hex')}`
    this.#logger = options.logger.child({ component: 'aggregator', member: this.member })
    const topics = topicNames(options.config)
    this.#segmentsTopic = topics.segments
    this.#dataTopics = options.config.couponFiles.map(topics.data)
  }

  async start (): Promise<void> {
    const config = this.#config
    if (config.couponFiles.length > MAX_FILES) {
      throw new CouponsError('CONFIG_INVALID', `the aggregator supports at most ${MAX_FILES} COUPON_FILES, got ${config.couponFiles.length}`)
    }
    const log = this.#logger
    this.#redis = createRedis(config, 'worker', log)
    this.#swap = new ValidSetSwap(this.#redis, config.redisPrefix, log)
    this.#kafka = createKafka(config, log, 'coupons-aggregator')
    this.#admin = this.#kafka.admin()
    await this.#admin.connect()
    // The group subscribes to every data topic, so they must exist; a missing one is created with
    // KAFKA_PARTITIONS (an existing one is the ingest's business: its count is never changed here).
    const existing = new Set(await this.#admin.listTopics())
    await ensureTopics(this.#admin, [
      { topic: this.#segmentsTopic, numPartitions: 1 },
      ...this.#dataTopics.filter((topic) => !existing.has(topic)).map((topic) => ({ topic, numPartitions: config.kafkaPartitions }))
    ], topicOptions(config))

    this.#subscriber = createRedis(config, 'worker', log)
    const { plans, swaps } = this.#swap.keys
    this.#subscriber.on('message', (channel: string, message: string) => {
      if (channel === plans) this.#onPlan(message)
      else if (channel === swaps) this.#scheduleEvaluation()
    })
    await this.#subscriber.subscribe(plans, swaps)

    const consumer = this.#kafka.consumer({
      groupId: config.aggregatorGroupId,
      partitionAssigners: [coPartitionedAssigner(this.#segmentsTopic)],
      maxBytesPerPartition: 8 << 20,
      // KafkaJS joins a whole response into one buffer before decoding it, next to the two
      // partition states: 32 MB read no faster at full size and held 30-50 MB more at the peak.
      maxBytes: 16 << 20,
      maxWaitTimeInMs: MAX_WAIT_TIME_MS,
      // A dead instance's partitions move to the others within 10 s (KafkaJS's default is 30 s);
      // heartbeats come from the fetch loop, which no decision blocks (they run on a thread).
      sessionTimeout: SESSION_TIMEOUT_MS,
      heartbeatInterval: 1000,
      // Partitions added to a data topic (KAFKA_PARTITIONS raised, then a full run) are noticed at
      // the next metadata refresh, which rebalances the group over them: soon, not in 5 minutes.
      metadataMaxAge: 10_000,
      allowAutoTopicCreation: false
    })
    this.#consumer = consumer
    this.#reader = new PartitionReader(consumer, this.#admin, log)
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => { this.#onAssignment(payload.memberAssignment) })
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload.restart || this.#closing.signal.aborted) return
      log.fatal({ err: payload.error }, 'the aggregator\'s group consumer stopped for good')
      this.#options.onFatal?.(payload.error)
    })
    await consumer.connect()
    await consumer.subscribe({ topics: [this.#segmentsTopic, ...this.#dataTopics], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
        if (!isRunning() || isStale()) return
        if (batch.topic === this.#segmentsTopic) this.#onSegmentsBatch(batch, resolveOffset)
        else await this.#reader?.onBatch(batch, resolveOffset)
      }
    })
    const timer = setInterval(() => {
      (this.#swap as ValidSetSwap).plan().then((plan) => { this.#onPlan(plan?.planId ?? null) }, () => {})
      // A run failed or swapped by another instance: the coordinator plans what comes next.
      this.#scheduleEvaluation()
    }, PLAN_POLL_MS)
    timer.unref()
    this.#timers.add(timer)
    log.info({ group: config.aggregatorGroupId, generation: await this.#swap.generation() }, 'aggregator joined its group')
  }

  /**
   * A (re)balance: work on the previous partitions stops, every data partition is paused until a
   * read resumes it, and the coordinator (whoever holds coupons.segments now) replays it.
   */
  #onAssignment (assignment: Record<string, number[]>): void {
    const consumer = this.#consumer as Consumer
    this.#assignment.abort(new CouponsError('AGGREGATOR_REBALANCED', 'the group rebalanced: partitions moved', { retriable: true }))
    this.#assignment = new AbortController()
    const owned = new Set<number>()
    const paused = []
    for (const topic of this.#dataTopics) {
      const partitions = assignment[topic] ?? []
      for (const p of partitions) owned.add(p)
      // Explicit partitions: KafkaJS forgets a whole-topic pause as soon as one partition is paused.
      if (partitions.length > 0) paused.push({ topic, partitions })
    }
    consumer.pause(paused)
    this.#owned = [...owned].sort((a, b) => a - b)
    const coordinates = (assignment[this.#segmentsTopic] ?? []).includes(0)
    this.#logger.info({ partitions: this.#owned, coordinator: coordinates }, 'partitions assigned')
    this.#options.onAssignment?.(this.#owned, coordinates)
    this.#coordination = null
    if (coordinates) {
      consumer.pause([{ topic: this.#segmentsTopic, partitions: [0] }])
      this.#coordinate(this.#assignment.signal, 1)
    }
    this.#scheduleWork()
  }

  /** Starts the replay; until Redis and Kafka answer, tries again with backoff while it still coordinates. */
  #coordinate (signal: AbortSignal, attempt: number): void {
    this.#startCoordinating(signal).catch((err: unknown) => {
      if (signal.aborted || this.#closing.signal.aborted) return
      const delayMs = retryDelayMs(this.#config.aggregatorRetryDelayMs, attempt)
      this.#logger.error({ err, retryInMs: delayMs }, `starting to coordinate failed; retrying in ${delayMs / 1000} s`)
      this.#later(() => { if (!signal.aborted) this.#coordinate(signal, attempt + 1) }, delayMs)
    })
  }

  async #startCoordinating (signal: AbortSignal): Promise<void> {
    const swap = this.#swap as ValidSetSwap
    const [applied, [end]] = await Promise.all([swap.applied(), (this.#admin as Admin).fetchTopicOffsets(this.#segmentsTopic)])
    if (signal.aborted) return
    const [low, high] = [BigInt(end.low), BigInt(end.high)]
    let from = applied.replayFrom ?? low
    if (from < low || from > high) {
      // The topic was recreated (or truncated) since: what the meta hash says no longer applies.
      this.#logger.warn({ replayFrom: from.toString(), low: end.low, high: end.high }, 'replayFrom is outside coupons.segments; replaying it all')
      from = low
    }
    const coordination: Coordination = { view: new SegmentsView(), next: from, catchUpTo: BigInt(end.high) - 1n, caughtUp: false, finished: new Set() }
    this.#coordination = coordination
    this.#logger.info({ from: from.toString(), to: coordination.catchUpTo.toString() }, 'coordinating: replaying coupons.segments')
    if (coordination.catchUpTo < from) this.#caughtUp(coordination)
    const consumer = this.#consumer as Consumer
    consumer.seek({ topic: this.#segmentsTopic, partition: 0, offset: from.toString() })
    consumer.resume([{ topic: this.#segmentsTopic, partitions: [0] }])
  }

  #onSegmentsBatch (batch: Batch, resolveOffset: (offset: string) => void): void {
    const coordination = this.#coordination
    if (coordination === null || coordination.next === null) {
      (this.#consumer as Consumer).pause([{ topic: batch.topic, partitions: [0] }])
      return
    }
    for (const message of messagesFrom(this.#consumer as Consumer, batch, coordination.next, resolveOffset)) {
      const offset = BigInt(message.offset)
      if (offset !== coordination.next) continue
      coordination.next = offset + 1n
      try {
        const record = decodeSegmentsRecord(message.value)
        const first = coordination.view.apply(record, offset)
        if (first !== undefined && record.type === 'segment') {
          this.#logger.warn({ runId: record.runId, file: record.file, ignored: record.segmentId, offset: message.offset, kept: first.manifest.segmentId, keptOffset: first.offset.toString() },
            'ignoring a second manifest of a file in one run (from an attempt that lost its job); the first one stands')
        }
      } catch (err) {
        this.#logger.error({ err, offset: message.offset }, 'skipping an unreadable coupons.segments record')
      }
      if (!coordination.caughtUp && offset >= coordination.catchUpTo) this.#caughtUp(coordination)
    }
    if (coordination.caughtUp) this.#scheduleEvaluation()
  }

  #caughtUp (coordination: Coordination): void {
    coordination.caughtUp = true
    this.#logger.info({ readyRuns: coordination.view.readyRuns().length }, 'coupons.segments replayed')
    this.#scheduleEvaluation()
  }

  #scheduleEvaluation (): void {
    if (this.#closing.signal.aborted) return
    this.#evaluateAgain = true
    this.#evaluation ??= this.#evaluateLoop().finally(() => { this.#evaluation = null })
  }

  async #evaluateLoop (): Promise<void> {
    while (this.#evaluateAgain && !this.#closing.signal.aborted) {
      this.#evaluateAgain = false
      const coordination = this.#coordination
      if (coordination === null || !coordination.caughtUp) return
      try {
        await this.#evaluate(coordination)
        this.#evaluateFailures = 0
      } catch (err) {
        if (this.#closing.signal.aborted) return
        // Planning only reads Redis and writes the plan: it waits out an outage (the runs' own
        // failures are bounded, in #runWork).
        const delayMs = retryDelayMs(this.#config.aggregatorRetryDelayMs, ++this.#evaluateFailures)
        this.#logger.error({ err, failures: this.#evaluateFailures, retryInMs: delayMs }, `planning failed; retrying in ${delayMs / 1000} s`)
        this.#later(() => { this.#scheduleEvaluation() }, delayMs)
        return
      }
    }
  }

  /** The coordinator's step: supersede what the applied set covers, plan the newest ready run. */
  async #evaluate (coordination: Coordination): Promise<void> {
    const swap = this.#swap as ValidSetSwap
    const { view, finished } = coordination
    const applied = await swap.applied()
    const ready: ReadyRun[] = []
    for (const runId of view.readyRuns()) {
      if (finished.has(runId)) continue
      if (await swap.hasResult(runId)) {
        finished.add(runId)
        continue
      }
      ready.push({ runId, newestOffset: view.newestOffset(runId) as bigint })
    }
    const decision = decideRuns(ready, applied.segmentsOffset, finished)
    for (const runId of decision.supersede) {
      await swap.recordResult(runId, { state: 'superseded', error: `its segments are already in the set applied by run ${applied.generation}` })
      finished.add(runId)
      this.#logger.info({ runId, generation: applied.generation }, 'run superseded: its segments are already applied')
    }
    if (applied.generation !== null) await swap.unlinkRetired(applied.generation)
    await this.#advanceReplayFrom(coordination, applied.segmentsOffset)
    if (decision.apply === null) return
    const runId = decision.apply
    let plan: RunPlan
    try {
      plan = planRun(runId, this.#config.couponFiles, (file) => view.current(file), this.#config.minFiles)
    } catch (err) {
      await this.#failRun(runId, err, 1)
      finished.add(runId)
      return
    }
    const planId = planIdOf(plan)
    const current = await swap.plan()
    // A coordinator that lost coupons.segments meanwhile (a rebalance) leaves planning to the new one.
    if (current?.planId === planId || this.#coordination !== coordination) return
    await swap.setPlan(runId, encodePlan(plan), planId)
    this.#logger.info({ runId, planId, partitions: plan.partitions, replaces: current?.planId, segments: plan.segments.map(({ file, segmentId, runId: from }) => ({ file, segmentId, runId: from })) }, 'run planned')
  }

  /**
   * Moves the replay start past what no future evaluation needs: every file's current segment and
   * every run still waiting for its result lie at or after it. A restart then replays a few
   * records, however many runs came before.
   */
  async #advanceReplayFrom (coordination: Coordination, appliedOffset: bigint | null): Promise<void> {
    if (appliedOffset === null) return
    const { view, finished } = coordination
    let from: bigint | null = null
    const consider = (offset: bigint): void => { if (from === null || offset < from) from = offset }
    for (const file of this.#config.couponFiles) {
      const current = view.current(file)
      if (current === undefined) return
      consider(current.offset)
    }
    // A run that never completes (a file that failed its ingest for good) must not hold the replay
    // start back forever: a run is waited for only while it could still complete, then it fails.
    const waitedSince = Date.now() - RUN_WAIT_MS
    for (const [runId, offset] of view.runOffsets()) {
      if (finished.has(runId)) continue
      const run = view.run(runId)
      if (Date.parse(run?.requestedAt ?? '') > waitedSince || view.isReady(runId)) {
        consider(offset)
        continue
      }
      const missing = (run?.files ?? []).filter((file) => !view.hasManifest(runId, file))
      await this.#failRun(runId, new CouponsError('AGGREGATOR_RUN_EXPIRED',
        `requested at ${run?.requestedAt ?? '?'}, ${missing.join(', ')} did not complete within ${RUN_WAIT_MS / 3600_000} h; run the ingest again`), 1)
      finished.add(runId)
    }
    if (from !== null) await (this.#swap as ValidSetSwap).advanceReplayFrom(from)
  }

  /**
   * The plan is `planId` now (null: none): work on another plan stops at once (the loop runs one
   * piece of work at a time, so it would only notice after it), and the loop looks at the plan.
   */
  #onPlan (planId: string | null): void {
    const working = this.#workPlan
    if (working !== null && working.planId !== planId) {
      working.controller.abort(new CouponsError('AGGREGATOR_PLAN_CHANGED',
        planId === null ? `plan ${working.planId} was withdrawn` : `plan ${planId} replaced ${working.planId}`, { retriable: true }))
    }
    this.#scheduleWork()
  }

  #scheduleWork (): void {
    if (this.#closing.signal.aborted || this.#swap === null) return
    this.#workAgain = true
    this.#work ??= this.#workLoop().finally(() => { this.#work = null })
  }

  async #workLoop (): Promise<void> {
    while (this.#workAgain && !this.#closing.signal.aborted) {
      this.#workAgain = false
      try {
        await this.#runWork()
      } catch (err) {
        this.#logger.error({ err }, 'looking at the plan failed')
      }
    }
  }

  /** Decides this instance's unstaged partitions of the current plan, then swaps if all are staged. */
  async #runWork (): Promise<void> {
    const swap = this.#swap as ValidSetSwap
    const current = await swap.plan()
    if (current === null) return
    const { runId, planId } = current
    if (this.#gaveUp.has(runId) || this.#retryPending(runId)) return
    let plan: RunPlan
    try {
      plan = decodePlan(current.body)
    } catch (err) {
      await this.#failRun(runId, err, 1, planId)
      return
    }
    if (await swap.hasResult(runId)) return
    const staged = await swap.stagedPartitions(planId)
    const mine = this.#owned.filter((p) => p < plan.partitions && !staged.has(p))
    if (mine.length === 0) {
      if (staged.size === plan.partitions) await this.#attempt(plan, planId, async () => { await this.#trySwap(plan, planId, null) })
      return
    }
    const controller = new AbortController()
    this.#workPlan = { planId, controller }
    const signal = AbortSignal.any([controller.signal, this.#assignment.signal, this.#closing.signal])
    try {
      await this.#attempt(plan, planId, async () => {
        const { aggregatorDecideThreads: decideThreads, aggregatorStateMemoryBytes: stateMemoryBytes } = this.#config
        const stats = await decidePartitions({ plan, planId, partitions: mine, reader: this.#reader as PartitionReader, swap, member: this.member, logger: this.#logger, signal, decideThreads, stateMemoryBytes })
        this.#logger.info({ runId, planId, partitions: mine, codesRead: stats.codesRead, validCount: stats.validCount, staged: stats.staged, states: stats.states, stateBytes: stats.stateBytes, decideThreads: stats.decideThreads, ms: stats.ms }, 'partitions staged')
        this.#options.onPartitions?.(runId, stats)
        if (stats.staged === plan.partitions) await this.#trySwap(plan, planId, stats)
      }, signal)
    } finally {
      if (this.#workPlan?.controller === controller) this.#workPlan = null
    }
  }

  #retryPending (runId: string): boolean {
    return this.#retryAt.has(runId) && (this.#retryAt.get(runId) as number) > Date.now()
  }

  readonly #retryAt = new Map<string, number>()

  /**
   * Runs one attempt at a run's work. An abort (rebalance, new plan, closing) is no failure; a
   * transient failure is retried after a backoff while attempts remain; any other failure, or the
   * last attempt's, is recorded as the run's result.
   */
  async #attempt (plan: RunPlan, planId: string, work: () => Promise<void>, signal?: AbortSignal): Promise<void> {
    const { runId } = plan
    try {
      await work()
      this.#failures.delete(runId)
      this.#retryAt.delete(runId)
    } catch (err) {
      if (signal?.aborted === true || this.#closing.signal.aborted) {
        this.#logger.info({ runId, reason: (signal?.reason as Error | undefined)?.message }, 'work on the run stopped')
        this.#scheduleWork()
        return
      }
      const failures = (this.#failures.get(runId) ?? 0) + 1
      this.#failures.set(runId, failures)
      const max = this.#config.aggregatorMaxAttempts
      if (!isRetriable(err) || failures >= max) {
        await this.#failRun(runId, err, failures, planId)
        return
      }
      const delayMs = retryDelayMs(this.#config.aggregatorRetryDelayMs, failures)
      this.#logger.error({ err, runId, failures, maxAttempts: max, retryInMs: delayMs }, `aggregation failed; retrying in ${delayMs / 1000} s`)
      this.#retryAt.set(runId, Date.now() + delayMs)
      this.#later(() => { this.#scheduleWork() }, delayMs)
    }
  }

  /** Records the run failed (unless it has a result already), so that it ends instead of looping. */
  async #failRun (runId: string, err: unknown, attempts: number, planId?: string): Promise<void> {
    this.#gaveUp.add(runId)
    const error = isCouponsError(err) ? `${err.code}: ${err.message}` : `${(err as Error).name ?? 'Error'}: ${(err as Error).message ?? String(err)}`
    this.#logger.error({ err, runId, attempts }, 'run failed; nothing was swapped')
    try {
      if (await (this.#swap as ValidSetSwap).recordResult(runId, { state: 'failed', error, attempts }, planId)) this.#options.onRunFailed?.(runId)
    } catch (recordErr) {
      // Redis is what failed, most likely: try again later, the run stays given up here.
      this.#logger.error({ err: recordErr, runId }, 'recording the failed run failed; retrying')
      this.#later(() => { this.#failRun(runId, err, attempts, planId).catch(() => {}) }, retryDelayMs(this.#config.aggregatorRetryDelayMs, attempts))
    }
  }

  async #trySwap (plan: RunPlan, planId: string, partitions: PartitionsStats | null): Promise<void> {
    const swap = this.#swap as ValidSetSwap
    const started = performance.now()
    const segments: SegmentUsed[] = plan.segments.map(({ file, segmentId, runId }) => ({ file, segmentId, runId }))
    const outcome = await swap.swap({ runId: plan.runId, planId, partitions: plan.partitions, segments, segmentsOffset: BigInt(plan.segmentsOffset) })
    const swapMs = performance.now() - started
    if (outcome.state === 'incomplete' || outcome.state === 'finished') return
    const at = performance.now()
    if (outcome.state === 'applied') {
      await deleteUnneededRecords(this.#admin as Admin, plan, this.#logger)
      this.#logger.info({ runId: plan.runId, validCount: outcome.validCount, deciders: outcome.deciders }, 'aggregation applied')
    } else {
      this.#logger.info({ runId: plan.runId, generation: outcome.generation }, 'aggregation superseded by a newer run')
    }
    const share = partitions ?? { partitions: [], codesRead: 0, validCount: 0, stateBytes: 0, states: 0, decideThreads: 0, staged: plan.partitions, ms: { read: 0, decide: 0, stage: 0, total: 0 } }
    const ms = { read: share.ms.read, decide: share.ms.decide, stage: share.ms.stage, swap: Math.round(swapMs), cleanup: Math.round(performance.now() - at), total: 0 }
    ms.total = share.ms.total + ms.swap + ms.cleanup
    this.#scheduleEvaluation()
    this.#options.onRun?.({ runId: plan.runId, outcome, partitions: share, ms })
  }

  #later (fn: () => void, delayMs: number): void {
    if (this.#closing.signal.aborted) return
    const timer = setTimeout(() => { this.#timers.delete(timer); fn() }, delayMs)
    timer.unref()
    this.#timers.add(timer)
  }

  /** Leaves the group (its partitions move to the others), abandons work in progress, closes clients. */
  async close (): Promise<void> {
    this.#closed ??= this.#close()
    return await this.#closed
  }

  async #close (): Promise<void> {
    this.#closing.abort(new CouponsError('AGGREGATOR_CLOSING', 'the aggregator is closing', { retriable: true }))
    for (const timer of this.#timers) clearTimeout(timer)
    // Work in progress stops at its next step; one stuck on Redis (an outage) is not waited for long.
    const settled = async (work: Promise<void> | null): Promise<void> => {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([work?.catch(() => {}), new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS) })])
      clearTimeout(timer)
    }
    const steps: Array<() => Promise<unknown>> = [
      async () => { await settled(this.#work) },
      async () => { await settled(this.#evaluation) },
      async () => await this.#consumer?.disconnect(),
      async () => await this.#subscriber?.quit(),
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

/**
 * Records before each current segment's first offset belong to older segments (or to attempts
 * that never completed): no future aggregation reads them. A failure here costs disk, not
 * correctness, so it is logged and the next swap tries again.
 */
async function deleteUnneededRecords (admin: Admin, plan: RunPlan, logger: Logger): Promise<void> {
  for (const segment of plan.segments) {
    const partitions = segment.partitions
      .filter((range) => range.firstOffset !== null)
      .map((range) => ({ partition: range.partition, offset: range.firstOffset as string }))
    if (partitions.length === 0) continue
    try {
      await admin.deleteTopicRecords({ topic: segment.topic, partitions })
    } catch (err) {
      logger.warn({ err, topic: segment.topic }, 'deleting records older than the current segment failed; the next swap retries')
    }
  }
}
