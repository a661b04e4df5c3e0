// The flash-sale consumer (DESIGN section 11): applies the api's requests to PostgreSQL and replies.
// One consumer group, N instances splitting the partitions. A fetched batch's claims are grouped by
// coupon and each group is applied in one transaction (claimCoupons), then the replies are sent,
// then the offsets are committed: at-least-once, and the store makes a redelivery harmless.
// Transient failures go to `coupon.<kind>.retry` (read by a second group that waits for each
// message's not-before time), and after FLASH_SALE_MAX_ATTEMPTS to `coupon.<kind>.dlq`.
import { setTimeout as sleep } from 'node:timers/promises'
import { Partitioners, type Admin, type Consumer, type EachBatchPayload, type Kafka, type KafkaMessage, type Message, type Producer } from 'kafkajs'
import type { Pool } from 'pg'
import { Counter, type Registry } from 'prom-client'
import type { Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { createKafka, ensureTopics, topicOptions } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { createPool } from '../shared/postgres.js'
import { REQUEST_KINDS, type ClaimOutcome, type RequestKind } from './contract.js'
import {
  HEADERS, REQUEST_RETENTION, RequestValues, couponNameOf, decodeValue, encodeValue, flashSaleTopics, headerText, kindOfTopic,
  type Failed, type FlashSaleTopics, type ReplyValue, type RequestValue
} from './messages.js'
import { claimCoupons, createCoupon, getCoupon, migrate } from './store.js'

/** Claims of one coupon per transaction at most: bounds the statement and the time a lock is held. */
const MAX_CLAIMS_PER_TRANSACTION = 2000
/** Under Kafka's default 1 MiB record limit, with room for the headers and the batch framing. */
const MAX_REPLY_BYTES = 900_000
/** Longest wait before a retry, whatever the configured delay and attempt. */
const MAX_RETRY_DELAY_MS = 60_000
/**
 * A dead instance's partitions move to the others after the session timeout: 10 s instead of
 * KafkaJS's 30 s, since every second of it is a second of 503s for its coupons. Batches heartbeat
 * after each chunk (well under a second) and waits heartbeat every WAIT_SLICE_MS.
 */
const GROUP_TIMING = { sessionTimeout: 10_000, heartbeatInterval: 1000 }
/** A waiting retry consumer heartbeats this often (well under the session timeout). */
const WAIT_SLICE_MS = 1000

/** Delay before attempt `attempt + 1` after attempt `attempt` failed: the base delay doubling each time. */
export function retryDelayMs (baseMs: number, attempt: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 20)))
}

/** A request read from a request or retry topic. */
interface Request<K extends RequestKind = RequestKind> {
  kind: K
  value: RequestValue[K]
  message: KafkaMessage
  correlationId: string
  replyTo: string
  /** epoch ms after which the caller no longer waits */
  deadline: number | null
  /** this attempt's number, from 1 */
  attempt: number
}

interface Output { topic: string, message: Message }

export interface FlashSaleConsumerOptions {
  config: Config
  logger: Logger
  /** a pool owned by the caller; default: one of its own on DATABASE_URL, closed by close() */
  pool?: Pool
  /** called when a Kafka consumer stopped for good (KafkaJS gave up): the process should exit */
  onFatal?: (err: unknown) => void
  /** where to count the requests handled (METRICS_PORT serves it); default: not counted */
  metricsRegistry?: Registry
}

export class FlashSaleConsumer {
  readonly #config: Config
  readonly #logger: Logger
  readonly #topics: FlashSaleTopics
  readonly #ownPool: boolean
  readonly #pool: Pool
  readonly #onFatal: (err: unknown) => void
  readonly #handled: Counter<'kind' | 'outcome'> | null
  #kafka: Kafka | null = null
  #admin: Admin | null = null
  #producer: Producer | null = null
  #requests: Consumer | null = null
  #retries: Consumer | null = null
  #replyTopics = new Set<string>()
  #closing: Promise<void> | null = null

  constructor (options: FlashSaleConsumerOptions) {
    this.#config = options.config
    this.#logger = options.logger.child({ component: 'flash-sale-consumer' })
    this.#topics = flashSaleTopics(options.config)
    this.#ownPool = options.pool === undefined
    this.#pool = options.pool ?? createPool(options.config.databaseUrl, 'flash-sale', this.#logger)
    this.#onFatal = options.onFatal ?? (() => {})
    this.#handled = options.metricsRegistry === undefined
      ? null
      : new Counter({
        name: 'coupons_flash_sale_consumer_requests_total',
        help: 'Flash-sale requests handled by the consumer, by kind and outcome (the reply\'s status, failed, retried or dead-lettered)',
        labelNames: ['kind', 'outcome'],
        registers: [options.metricsRegistry]
      })
  }

  async start (): Promise<void> {
    const config = this.#config
    const log = this.#logger
    await migrate(this.#pool, log)

    this.#kafka = createKafka(config, log, 'coupons-flash-sale')
    this.#admin = this.#kafka.admin()
    await this.#admin.connect()
    const partitions = config.kafkaPartitions
    await ensureTopics(this.#admin, REQUEST_KINDS.flatMap((kind) => [
      { topic: this.#topics.request(kind), numPartitions: partitions, partitions: 'at-least', configEntries: REQUEST_RETENTION },
      { topic: this.#topics.retry(kind), numPartitions: partitions, partitions: 'at-least', configEntries: REQUEST_RETENTION },
      // Dead letters wait for an operator: kept until deleted (the default of ensureTopics).
      { topic: this.#topics.dlq(kind), numPartitions: partitions, partitions: 'at-least' }
    ]), topicOptions(config))
    this.#producer = this.#kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
    await this.#producer.connect()

    this.#requests = this.#kafka.consumer({ groupId: this.#topics.consumerGroup, allowAutoTopicCreation: false, maxWaitTimeInMs: 100, ...GROUP_TIMING })
    this.#watch(this.#requests, 'request')
    await this.#requests.connect()
    await this.#requests.subscribe({ topics: REQUEST_KINDS.map((kind) => this.#topics.request(kind)), fromBeginning: true })
    await this.#requests.run({
      eachBatchAutoResolve: false,
      // Partitions are independent (a coupon lives in one): apply several at once.
      partitionsConsumedConcurrently: Math.min(partitions * REQUEST_KINDS.length, 16),
      eachBatch: async (payload) => { await this.#onRequestBatch(payload) }
    })

    this.#retries = this.#kafka.consumer({ groupId: this.#topics.retryGroup, allowAutoTopicCreation: false, maxWaitTimeInMs: 500, ...GROUP_TIMING })
    this.#watch(this.#retries, 'retry')
    await this.#retries.connect()
    await this.#retries.subscribe({ topics: REQUEST_KINDS.map((kind) => this.#topics.retry(kind)), fromBeginning: true })
    await this.#retries.run({
      eachBatchAutoResolve: false,
      // Commit each retried message as soon as it is done: a batch may wait a while.
      autoCommitThreshold: 1,
      partitionsConsumedConcurrently: Math.min(partitions * REQUEST_KINDS.length, 16),
      eachBatch: async (payload) => { await this.#onRetryBatch(payload) }
    })
    log.info({ group: this.#topics.consumerGroup, maxAttempts: config.flashSaleMaxAttempts, retryDelayMs: config.flashSaleRetryDelayMs }, 'flash-sale consumer started')
  }

  // KafkaJS restarts a consumer after a retriable failure; after any other it stops for good, and
  // a process that silently consumes nothing must not look healthy.
  #watch (consumer: Consumer, what: string): void {
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload.restart || this.#closing !== null) return
      this.#logger.fatal({ err: payload.error, consumer: what }, `the flash-sale ${what} consumer stopped for good`)
      this.#onFatal(payload.error)
    })
  }

  async #onRequestBatch ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const kind = kindOfTopic(this.#topics, batch.topic) as RequestKind
    for (let at = 0; at < batch.messages.length; at += MAX_CLAIMS_PER_TRANSACTION) {
      if (!isRunning() || isStale()) return
      const chunk = batch.messages.slice(at, at + MAX_CLAIMS_PER_TRANSACTION)
      await this.#send(await this.#apply(kind, batch.topic, chunk))
      resolveOffset(chunk[chunk.length - 1].offset)
      await heartbeat()
    }
  }

  /**
   * Retried requests, in order: each waits for its not-before time, sleeping in slices and
   * heartbeating in between so that the group keeps this member; a rebalance or shutdown ends the
   * wait and leaves the rest for the next owner.
   */
  async #onRetryBatch ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const kind = kindOfTopic(this.#topics, batch.topic) as RequestKind
    let ready: KafkaMessage[] = []
    const applyReady = async (): Promise<void> => {
      if (ready.length === 0) return
      await this.#send(await this.#apply(kind, batch.topic, ready))
      resolveOffset(ready[ready.length - 1].offset)
      await commitOffsetsIfNecessary()
      ready = []
    }
    for (const message of batch.messages) {
      const notBefore = Number(headerText(message.headers, HEADERS.notBefore) ?? 0)
      // A clock far ahead on the producing side must not park the partition for long.
      const until = Math.min(Number.isFinite(notBefore) ? notBefore : 0, Date.now() + MAX_RETRY_DELAY_MS)
      if (until > Date.now()) await applyReady()
      while (until > Date.now()) {
        if (!isRunning() || isStale()) return
        await sleep(Math.min(WAIT_SLICE_MS, until - Date.now()))
        await heartbeat()
      }
      if (!isRunning() || isStale()) return
      ready.push(message)
      if (ready.length >= MAX_CLAIMS_PER_TRANSACTION) await applyReady()
    }
    await applyReady()
  }

  /** Applies a chunk of one topic-partition's messages and returns what to send: replies, retries, dead letters. */
  async #apply (kind: RequestKind, topic: string, messages: KafkaMessage[]): Promise<Output[]> {
    const outputs: Output[] = []
    const requests: Request[] = []
    for (const message of messages) {
      const request = this.#parse(kind, topic, message, outputs)
      if (request === null) continue
      // Nobody waits for a late read any more; a late write is still applied (the caller was told
      // its outcome is unknown).
      if (kind === 'get' && request.deadline !== null && request.deadline < Date.now()) continue
      requests.push(request)
    }
    if (kind === 'claim') await this.#applyClaims(requests as Array<Request<'claim'>>, topic, outputs)
    else if (kind === 'create') await this.#applyCreates(requests as Array<Request<'create'>>, topic, outputs)
    else await this.#applyGets(requests as Array<Request<'get'>>, topic, outputs)
    return outputs
  }

  async #applyClaims (requests: Array<Request<'claim'>>, topic: string, outputs: Output[]): Promise<void> {
    const byCoupon = groupBy(requests, (request) => request.value.coupon_name)
    await Promise.all([...byCoupon].map(async ([couponName, group]) => {
      let outcomes: ClaimOutcome[]
      try {
        outcomes = await claimCoupons(this.#pool, couponName, group.map((request) => request.value.user_id))
      } catch (err) {
        this.#failed(group, topic, err, outputs)
        return
      }
      group.forEach((request, i) => { this.#reply(request, outcomes[i], outputs) })
    }))
  }

  // Creates are rare and must keep their order (the second create of a name answers "exists").
  async #applyCreates (requests: Array<Request<'create'>>, topic: string, outputs: Output[]): Promise<void> {
    for (const request of requests) {
      try {
        this.#reply(request, await createCoupon(this.#pool, request.value.name, request.value.amount), outputs)
      } catch (err) {
        this.#failed([request], topic, err, outputs)
      }
    }
  }

  // One read per coupon for the whole chunk: a burst of reads of one coupon is one query.
  async #applyGets (requests: Array<Request<'get'>>, topic: string, outputs: Output[]): Promise<void> {
    await Promise.all([...groupBy(requests, (request) => request.value.name)].map(async ([name, group]) => {
      try {
        const outcome = await getCoupon(this.#pool, name)
        for (const request of group) this.#reply(request, outcome, outputs)
      } catch (err) {
        this.#failed(group, topic, err, outputs)
      }
    }))
  }

  /** Reads a message; one that cannot be read goes to the dead-letter topic at once (a retry cannot fix it). */
  #parse (kind: RequestKind, topic: string, message: KafkaMessage, outputs: Output[]): Request | null {
    const correlationId = headerText(message.headers, HEADERS.correlationId)
    const replyTo = headerText(message.headers, HEADERS.replyTo)
    const deadline = Number(headerText(message.headers, HEADERS.deadline))
    const attempt = Number(headerText(message.headers, HEADERS.attempt) ?? '1')
    try {
      if (correlationId === undefined || correlationId === '') throw new CouponsError('FLASH_SALE_BAD_MESSAGE', `the ${kind} request has no ${HEADERS.correlationId} header`)
      if (replyTo === undefined || !replyTo.startsWith(this.#topics.replyPrefix)) {
        throw new CouponsError('FLASH_SALE_BAD_MESSAGE', `the ${kind} request's ${HEADERS.replyTo} header is not a reply topic: ${String(replyTo)}`)
      }
      if (!Number.isInteger(attempt) || attempt < 1) throw new CouponsError('FLASH_SALE_BAD_MESSAGE', `the ${kind} request's ${HEADERS.attempt} header is not a positive integer`)
      const value = decodeValue(RequestValues[kind], message.value, `the ${kind} request`)
      return { kind, value, message, correlationId, replyTo, deadline: Number.isFinite(deadline) ? deadline : null, attempt }
    } catch (err) {
      const error = err as CouponsError
      this.#logger.error({ err, topic, offset: message.offset }, 'dead-lettering an unreadable flash-sale request')
      outputs.push(this.#deadLetter(kind, topic, message, Number.isInteger(attempt) ? attempt : 1, error))
      this.#handled?.inc({ kind, outcome: 'dead-lettered' })
      // Answer the caller if the headers say who it is: it should not wait for its timeout.
      if (correlationId !== undefined && replyTo?.startsWith(this.#topics.replyPrefix) === true) {
        outputs.push(replyOutput(replyTo, correlationId, failure(error)))
      }
      return null
    }
  }

  #reply<K extends RequestKind> (request: Request<K>, value: ReplyValue[K], outputs: Output[]): void {
    const output = replyOutput(request.replyTo, request.correlationId, value)
    this.#handled?.inc({ kind: request.kind, outcome: value.status })
    if ((output.message.value as Buffer).length > MAX_REPLY_BYTES) {
      // A coupon read with tens of thousands of claimants: Kafka would refuse the record, and a
      // send that always fails would stall the partition. The caller gets a failure instead.
      this.#logger.error({ kind: request.kind, bytes: (output.message.value as Buffer).length }, 'a flash-sale reply is too large for Kafka')
      outputs.push(replyOutput(request.replyTo, request.correlationId, failure(new CouponsError('FLASH_SALE_REPLY_TOO_LARGE',
        `the reply is ${(output.message.value as Buffer).length} bytes, more than Kafka's ${MAX_REPLY_BYTES}`))))
      return
    }
    outputs.push(output)
  }

  /**
   * A group of requests failed as one (one transaction): a transient failure sends each to the
   * retry topic while attempts are left; otherwise each goes to the dead-letter topic and its
   * caller, if still waiting, is told it failed: that nothing was applied, unless some attempt's
   * outcome was unknown (a COMMIT whose answer was lost), which the retries carry along.
   */
  #failed (requests: Request[], topic: string, err: unknown, outputs: Output[]): void {
    const error = isCouponsError(err) ? err : new CouponsError('FLASH_SALE_STORE_FAILED', (err as Error).message, { cause: err })
    const { flashSaleMaxAttempts: maxAttempts, flashSaleRetryDelayMs: baseDelayMs } = this.#config
    const attempt = requests[0].attempt
    const retry = error.retriable && requests.every((request) => request.attempt < maxAttempts)
    this.#logger[retry ? 'warn' : 'error']({ err: error, topic, requests: requests.length, attempt, maxAttempts },
      retry ? 'flash-sale requests failed; retrying' : 'flash-sale requests failed; dead-lettering')
    for (const request of requests) {
      const outcomeUnknown = error.code === 'FLASH_SALE_OUTCOME_UNKNOWN' || headerText(request.message.headers, HEADERS.outcomeUnknown) !== undefined
      const marked: Record<string, string> = outcomeUnknown ? { [HEADERS.outcomeUnknown]: '1' } : {}
      if (error.retriable && request.attempt < maxAttempts) {
        const headers = {
          ...forwardedHeaders(request.message),
          ...marked,
          [HEADERS.attempt]: String(request.attempt + 1),
          [HEADERS.notBefore]: String(Date.now() + retryDelayMs(baseDelayMs, request.attempt)),
          [HEADERS.errorCode]: error.code,
          [HEADERS.errorMessage]: error.message
        }
        outputs.push({ topic: this.#topics.retry(request.kind), message: { key: couponNameOf(request.kind, request.value), value: request.message.value, headers } })
        this.#handled?.inc({ kind: request.kind, outcome: 'retried' })
        continue
      }
      outputs.push(this.#deadLetter(request.kind, topic, request.message, request.attempt, error, marked))
      this.#handled?.inc({ kind: request.kind, outcome: 'dead-lettered' })
      if (request.deadline === null || request.deadline > Date.now()) {
        const told = outcomeUnknown && error.code !== 'FLASH_SALE_OUTCOME_UNKNOWN'
          ? new CouponsError('FLASH_SALE_OUTCOME_UNKNOWN', `an earlier attempt may have been applied; the last one failed: ${error.code}: ${error.message}`)
          : error
        outputs.push(replyOutput(request.replyTo, request.correlationId, failure(told)))
      }
    }
  }

  #deadLetter (kind: RequestKind, topic: string, message: KafkaMessage, attempts: number, error: CouponsError, extraHeaders: Record<string, string> = {}): Output {
    return {
      topic: this.#topics.dlq(kind),
      message: {
        key: message.key,
        value: message.value,
        headers: {
          ...forwardedHeaders(message),
          ...extraHeaders,
          [HEADERS.attempt]: String(attempts),
          [HEADERS.errorCode]: error.code,
          [HEADERS.errorMessage]: error.message,
          [HEADERS.originalTopic]: topic,
          [HEADERS.failedAt]: new Date().toISOString()
        }
      }
    }
  }

  /**
   * Sends a chunk's retries, dead letters and replies, acknowledged by every replica, before its
   * offsets are resolved. A reply to a topic that no longer exists (an api instance gone for good)
   * is dropped: nobody can read it, and producing to it would stall the partition. Known reply
   * topics are cached; a topic not in the cache is looked up once per chunk, after its request
   * was produced (so after its api created it), and a failed send forgets the cache.
   */
  async #send (outputs: Output[]): Promise<void> {
    if (outputs.length === 0) return
    const replyTopics = new Set(outputs.filter((output) => output.topic.startsWith(this.#topics.replyPrefix)).map((output) => output.topic))
    if ([...replyTopics].some((topic) => !this.#replyTopics.has(topic))) {
      this.#replyTopics = new Set((await (this.#admin as Admin).listTopics()).filter((name) => name.startsWith(this.#topics.replyPrefix)))
    }
    const missing = [...replyTopics].filter((topic) => !this.#replyTopics.has(topic))
    if (missing.length > 0) this.#logger.warn({ topics: missing }, 'dropping replies to reply topics that do not exist')
    const byTopic = groupBy(outputs.filter((output) => !missing.includes(output.topic)), (output) => output.topic)
    if (byTopic.size === 0) return
    try {
      await (this.#producer as Producer).sendBatch({
        acks: -1,
        topicMessages: [...byTopic].map(([topic, group]) => ({ topic, messages: group.map((output) => output.message) }))
      })
    } catch (err) {
      // Perhaps a reply topic deleted since it was cached: the chunk's next try looks again.
      this.#replyTopics = new Set()
      throw err
    }
  }

  /** Stops both consumers (each finishes the chunk in hand), then the producer and the pool; idempotent. */
  async close (): Promise<void> {
    this.#closing ??= (async () => {
      const steps: Array<[string, () => Promise<void> | undefined]> = [
        ['request consumer', () => this.#requests?.disconnect()],
        ['retry consumer', () => this.#retries?.disconnect()],
        ['producer', () => this.#producer?.disconnect()],
        ['admin', () => this.#admin?.disconnect()],
        ['PostgreSQL pool', () => (this.#ownPool ? this.#pool.end() : undefined)]
      ]
      for (const [what, step] of steps) {
        try {
          await step()
        } catch (err) {
          this.#logger.warn({ err }, `closing the flash-sale ${what} failed`)
        }
      }
    })()
    return await this.#closing
  }
}

function failure (error: CouponsError): Failed {
  return { status: 'failed', error: { code: error.code, message: error.message } }
}

function replyOutput (topic: string, correlationId: string, value: unknown): Output {
  return { topic, message: { value: encodeValue(value), headers: { [HEADERS.correlationId]: correlationId } } }
}

/** The request's own headers (correlation id, reply topic, deadline), without the retry bookkeeping. */
function forwardedHeaders (message: KafkaMessage): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const name of [HEADERS.correlationId, HEADERS.replyTo, HEADERS.deadline]) {
    const value = headerText(message.headers, name)
    if (value !== undefined) headers[name] = value
  }
  return headers
}

function groupBy<T> (items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>()
  for (const item of items) {
    const key = keyOf(item)
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [item])
    else group.push(item)
  }
  return groups
}
