// The api's side of event-driven flash sales (DESIGN section 11): publishes each request to
// `coupon.<kind>.req` and awaits the flash-sale consumer's reply on this instance's reply topic.
// One object owns the producer, the reply consumer and the requests waiting for a reply.
import { randomBytes, randomUUID } from 'node:crypto'
import { Partitioners, type Admin, type Consumer, type Kafka, type Message, type Producer } from 'kafkajs'
import type { Config } from '../shared/config.js'
import { CouponsError } from '../shared/errors.js'
import { createKafka, ensureTopics, topicOptions } from '../shared/kafka.js'
import type { Logger } from '../shared/logger.js'
import { REQUEST_KINDS, type ClaimCouponBody, type ClaimOutcome, type CreateCouponBody, type CreateOutcome, type FlashSale, type GetOutcome, type RequestKind } from './contract.js'
import { HEADERS, REPLY_RETENTION, REQUEST_RETENTION, ReplyValues, couponNameOf, decodeValue, encodeValue, flashSaleTopics, headerText, type FlashSaleTopics, type RequestValue } from './messages.js'

/** At most this many requests per produce call: a burst is sent in a few calls, not one per request. */
const MAX_BATCH = 1000
/** After a failed start, requests try starting again at most this often. */
const RESTART_INTERVAL_MS = 5000

interface Pending {
  kind: RequestKind
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

interface Outgoing {
  correlationId: string
  topic: string
  message: Message
}

export interface FlashSaleRequesterOptions {
  config: Config
  logger: Logger
}

export class FlashSaleRequester implements FlashSale {
  readonly #config: Config
  readonly #logger: Logger
  readonly #topics: FlashSaleTopics
  readonly #replyTopic: string
  readonly #pending = new Map<string, Pending>()
  #outbox: Outgoing[] = []
  #flushScheduled = false
  #kafka: Kafka | null = null
  #admin: Admin | null = null
  #producer: Producer | null = null
  #consumer: Consumer | null = null
  #running = false
  #starting: Promise<void> | null = null
  #lastStart = 0
  #closing: Promise<void> | null = null

  constructor (options: FlashSaleRequesterOptions) {
    this.#config = options.config
    this.#logger = options.logger.child({ component: 'flash-sale-requester' })
    this.#topics = flashSaleTopics(options.config)
    this.#replyTopic = this.#topics.reply(options.config.instanceId)
  }

  /** the topic this instance reads its replies from */
  get replyTopic (): string { return this.#replyTopic }

  /** how many requests wait for a reply (tests, metrics) */
  get pendingCount (): number { return this.#pending.size }

  /**
   * Creates the topics, connects the producer and starts the reply consumer at the reply topic's
   * current end; when it resolves, every reply to a request sent afterwards will be read. After a
   * failed start (Kafka down when the api starts) or a crash of the reply consumer, the next
   * request starts it again in the background (at most every RESTART_INTERVAL_MS) and is refused
   * meanwhile.
   */
  async start (): Promise<void> {
    if (this.#closing !== null) throw new CouponsError('FLASH_SALE_UNAVAILABLE', 'the flash-sale client is closed')
    this.#starting ??= (async () => {
      this.#lastStart = Date.now()
      try {
        await this.#connect()
      } catch (err) {
        await this.#disconnect()
        throw err
      }
    })().finally(() => { this.#starting = null })
    return await this.#starting
  }

  async #connect (): Promise<void> {
    const config = this.#config
    const log = this.#logger
    const kafka = this.#kafka ??= createKafka(config, log, `coupons-api-${config.instanceId}`)
    this.#admin = kafka.admin()
    await this.#admin.connect()
    await ensureTopics(this.#admin, [
      ...REQUEST_KINDS.map((kind) => ({ topic: this.#topics.request(kind), numPartitions: config.kafkaPartitions, partitions: 'at-least' as const, configEntries: REQUEST_RETENTION })),
      { topic: this.#replyTopic, numPartitions: 1, configEntries: REPLY_RETENTION }
    ], topicOptions(config))
    this.#producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
    await this.#producer.connect()

    // A group of its own, never shared: two api processes given the same INSTANCE_ID share the
    // reply topic, and each must read every reply (keeping the ones it waits for) instead of
    // splitting the partitions and losing the other's replies.
    const end = await this.#replyTopicEnd()
    const consumer = this.#consumer = kafka.consumer({
      groupId: `coupons-api-replies-${config.instanceId}-${randomBytes(6).toString('hex')}`,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 1000
    })
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload.restart) return
      // KafkaJS gave up (a long broker outage): requests would only time out from now on.
      log.error({ err: payload.error }, 'the flash-sale reply consumer stopped; restarting it on the next request')
      this.#running = false
      this.#disconnect().catch(() => {})
    })
    await consumer.connect()
    await consumer.subscribe({ topic: this.#replyTopic, fromBeginning: false })
    await consumer.run({
      // Nothing to resume after a restart: the requests that were waiting died with the process.
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) this.#onReply(message)
      }
    })
    // run() has joined the group; the seek pins the start to the end read above, so a reply
    // written between that read and the first fetch is not skipped by "latest".
    for (const { partition, offset } of end) consumer.seek({ topic: this.#replyTopic, partition, offset })
    this.#running = true
    log.info({ replyTopic: this.#replyTopic, timeoutMs: config.flashSaleReplyTimeoutMs }, 'flash-sale requester started')
  }

  async #disconnect (): Promise<void> {
    this.#running = false
    const clients: Array<[string, { disconnect: () => Promise<void> } | null]> = [
      ['reply consumer', this.#consumer],
      ['producer', this.#producer],
      ['admin', this.#admin]
    ]
    this.#consumer = this.#producer = this.#admin = null
    for (const [what, client] of clients) {
      try {
        await client?.disconnect()
      } catch (err) {
        this.#logger.warn({ err }, `closing the flash-sale ${what} failed`)
      }
    }
  }

  #restartSoon (): void {
    if (this.#closing !== null || this.#starting !== null || Date.now() - this.#lastStart < RESTART_INTERVAL_MS) return
    this.start().catch((err: unknown) => { this.#logger.warn({ err }, 'the flash-sale client could not start; its requests are refused until it does') })
  }

  // The reply topic may have been created a moment ago: its leader can still refuse to list offsets.
  async #replyTopicEnd (): Promise<Array<{ partition: number, offset: string }>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await (this.#admin as Admin).fetchTopicOffsets(this.#replyTopic)
      } catch (err) {
        if (attempt >= 50 || (err as { retriable?: boolean }).retriable !== true) throw err
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }

  async create (body: CreateCouponBody): Promise<CreateOutcome> {
    return await this.#request('create', { name: body.name, amount: body.amount }) as CreateOutcome
  }

  async claim (body: ClaimCouponBody): Promise<ClaimOutcome> {
    return await this.#request('claim', { user_id: body.user_id, coupon_name: body.coupon_name }) as ClaimOutcome
  }

  async get (name: string): Promise<GetOutcome> {
    return await this.#request('get', { name }) as GetOutcome
  }

  async #request<K extends RequestKind> (kind: K, value: RequestValue[K]): Promise<unknown> {
    if (!this.#running) {
      this.#restartSoon()
      throw new CouponsError('FLASH_SALE_UNAVAILABLE', 'the flash-sale client is not running (Kafka unreachable at its start?)', { retriable: true })
    }
    const correlationId = randomUUID()
    const timeoutMs = this.#config.flashSaleReplyTimeoutMs
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(correlationId)
        reject(new CouponsError('FLASH_SALE_OUTCOME_UNKNOWN',
          `no reply to the ${kind} request within ${timeoutMs} ms${kind === 'get' ? '' : '; it may still be applied'}`, { retriable: true }))
      }, timeoutMs)
      this.#pending.set(correlationId, { kind, resolve, reject, timer })
      this.#outbox.push({
        correlationId,
        topic: this.#topics.request(kind),
        message: {
          key: couponNameOf(kind, value),
          value: encodeValue(value),
          headers: {
            [HEADERS.correlationId]: correlationId,
            [HEADERS.replyTo]: this.#replyTopic,
            [HEADERS.deadline]: String(Date.now() + timeoutMs)
          }
        }
      })
      this.#scheduleFlush()
    })
  }

  // Requests made in the same turn of the event loop go out in one produce call per MAX_BATCH.
  #scheduleFlush (): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    setImmediate(() => {
      this.#flushScheduled = false
      while (this.#outbox.length > 0) this.#flush(this.#outbox.splice(0, MAX_BATCH))
    })
  }

  #flush (batch: Outgoing[]): void {
    const byTopic = new Map<string, Message[]>()
    for (const { topic, message } of batch) {
      const messages = byTopic.get(topic)
      if (messages === undefined) byTopic.set(topic, [message])
      else messages.push(message)
    }
    const producer = this.#producer
    const sent = producer === null
      ? Promise.reject(new Error('the producer is not connected'))
      : producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) })
    sent.catch((err: unknown) => {
      this.#logger.warn({ err, requests: batch.length }, 'publishing flash-sale requests failed')
      for (const { correlationId } of batch) {
        this.#settle(correlationId)?.reject(new CouponsError('FLASH_SALE_UNAVAILABLE', 'the flash-sale request could not be published to Kafka', { cause: err, retriable: true }))
      }
    })
  }

  /** Takes a request out of the map and stops its timer; undefined when nobody waits for it any more. */
  #settle (correlationId: string | undefined): Pending | undefined {
    if (correlationId === undefined) return undefined
    const pending = this.#pending.get(correlationId)
    if (pending === undefined) return undefined
    this.#pending.delete(correlationId)
    clearTimeout(pending.timer)
    return pending
  }

  #onReply (message: { headers?: Record<string, unknown>, value: Buffer | null, offset: string }): void {
    const correlationId = headerText(message.headers, HEADERS.correlationId)
    const pending = this.#settle(correlationId)
    if (pending === undefined) {
      // Too late (the caller got its 503), or for another process sharing this instance id.
      this.#logger.debug({ correlationId, offset: message.offset }, 'dropping a reply that nobody here waits for')
      return
    }
    let reply
    try {
      reply = decodeValue(ReplyValues[pending.kind], message.value, `a ${pending.kind} reply`)
    } catch (err) {
      this.#logger.error({ err, correlationId, offset: message.offset }, 'unreadable flash-sale reply')
      pending.reject(new CouponsError('FLASH_SALE_OUTCOME_UNKNOWN', `the reply to the ${pending.kind} request is unreadable; the outcome is unknown`, { cause: err, retriable: true }))
      return
    }
    if (reply.status === 'failed') {
      // Dead-lettered. Every attempt failed and rolled back, so nothing was applied, unless the
      // consumer says an attempt's outcome was unknown (a COMMIT whose answer was lost).
      const code = reply.error.code === 'FLASH_SALE_OUTCOME_UNKNOWN' ? 'FLASH_SALE_OUTCOME_UNKNOWN' : 'FLASH_SALE_UNAVAILABLE'
      pending.reject(new CouponsError(code, `the flash-sale consumer gave up on the ${pending.kind} request (${reply.error.code}: ${reply.error.message})`, { retriable: true }))
      return
    }
    pending.resolve(reply)
  }

  /** Stops taking requests, rejects those still waiting, and disconnects; idempotent. */
  async close (): Promise<void> {
    this.#closing ??= (async () => {
      this.#running = false
      for (const correlationId of [...this.#pending.keys()]) {
        this.#settle(correlationId)?.reject(new CouponsError('FLASH_SALE_OUTCOME_UNKNOWN', 'the flash-sale client closed before the reply came; the request may still be applied', { retriable: true }))
      }
      this.#outbox = []
      await this.#starting?.catch(() => {})
      await this.#disconnect()
    })()
    return await this.#closing
  }
}
