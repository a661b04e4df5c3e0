// The flash-sale Kafka contract (DESIGN section 11), declared once and shared by the api's
// request/reply client and the flash-sale consumer: topic names, headers, and the request and reply
// values. A request is keyed by coupon name, so all requests of one coupon share one partition.
import { Type, type Static, type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import type { Config } from '../shared/config.js'
import { CouponsError } from '../shared/errors.js'
import { ClaimCouponBody, CouponNameParams, CreateCouponBody, FlashCoupon, REQUEST_KINDS, type RequestKind } from './contract.js'

/** Retention of the request and retry topics: consumed at once, a week covers a long consumer outage. */
export const REQUEST_RETENTION = [{ name: 'retention.ms', value: String(7 * 24 * 3600_000) }]
/** Retention of the reply topics: read within seconds of being written. */
export const REPLY_RETENTION = [{ name: 'retention.ms', value: String(3600_000) }]

export interface FlashSaleTopics {
  /** `coupon.<kind>.req`: what the api publishes */
  request: (kind: RequestKind) => string
  /** `coupon.<kind>.retry`: requests waiting for another attempt after a transient failure */
  retry: (kind: RequestKind) => string
  /** `coupon.<kind>.dlq`: requests given up on, with the error in their headers */
  dlq: (kind: RequestKind) => string
  /** `coupon.reply.<instance id>`: the replies to one api instance */
  reply: (instanceId: string) => string
  /** every reply topic starts with this: a request naming another topic is refused */
  replyPrefix: string
  /** the consumer group of the flash-sale consumers (one group, N instances) */
  consumerGroup: string
  /** the consumer group of their retry-topic consumers */
  retryGroup: string
}

export function flashSaleTopics (config: Pick<Config, 'kafkaTopicPrefix'>): FlashSaleTopics {
  const prefix = config.kafkaTopicPrefix
  return {
    request: (kind) => `${prefix}coupon.${kind}.req`,
    retry: (kind) => `${prefix}coupon.${kind}.retry`,
    dlq: (kind) => `${prefix}coupon.${kind}.dlq`,
    reply: (instanceId) => `${prefix}coupon.reply.${instanceId}`,
    replyPrefix: `${prefix}coupon.reply.`,
    consumerGroup: `${prefix}coupons-flash-sale`,
    retryGroup: `${prefix}coupons-flash-sale-retry`
  }
}

/** Which kind a request, retry or dead-letter topic carries; null for any other topic. */
export function kindOfTopic (topics: FlashSaleTopics, topic: string): RequestKind | null {
  return REQUEST_KINDS.find((kind) => topic === topics.request(kind) || topic === topics.retry(kind) || topic === topics.dlq(kind)) ?? null
}

export const HEADERS = {
  /** on requests and replies: pairs a reply with its request */
  correlationId: 'correlation-id',
  /** on requests: the topic the reply goes to */
  replyTo: 'reply-to',
  /** on requests: epoch ms after which the caller no longer waits (a late get is not worth running) */
  deadline: 'deadline',
  /** on retries and dead letters: the attempt that comes next (retry) or the attempts made (dlq) */
  attempt: 'attempt',
  /** on retries: epoch ms before which the next attempt must not start */
  notBefore: 'not-before',
  /** on retries and dead letters: the last error */
  errorCode: 'error-code',
  errorMessage: 'error-message',
  /**
   * on retries and dead letters: present once an attempt may have been applied (its outcome was
   * unknown), so that a final failure does not tell the caller that nothing was applied
   */
  outcomeUnknown: 'outcome-unknown',
  /** on dead letters: where the request was read from, and when it was given up on (ISO 8601) */
  originalTopic: 'original-topic',
  failedAt: 'failed-at'
} as const

/** The value of each kind's request: the HTTP body (or, for get, the path parameters). */
export const RequestValues = {
  create: CreateCouponBody,
  claim: ClaimCouponBody,
  get: CouponNameParams
} satisfies Record<RequestKind, TSchema>

export interface RequestValue {
  create: Static<typeof CreateCouponBody>
  claim: Static<typeof ClaimCouponBody>
  get: Static<typeof CouponNameParams>
}

/** The coupon name a request is keyed by (its partition). */
export function couponNameOf<K extends RequestKind> (kind: K, value: RequestValue[K]): string {
  return kind === 'claim' ? (value as RequestValue['claim']).coupon_name : (value as RequestValue['create' | 'get']).name
}

/**
 * The request was dead-lettered: nothing of it was written, unless `error.code` is
 * FLASH_SALE_OUTCOME_UNKNOWN (an attempt may have been applied).
 */
export const Failed = Type.Object({
  status: Type.Literal('failed'),
  error: Type.Object({ code: Type.String(), message: Type.String() })
})
export type Failed = Static<typeof Failed>

const status = <S extends string>(name: S) => Type.Object({ status: Type.Literal(name) })

/** The value of each kind's reply: the outcome of src/flash-sale/contract.ts, or a failure. */
export const ReplyValues = {
  create: Type.Union([Type.Object({ status: Type.Literal('created'), coupon: FlashCoupon }), status('exists'), Failed]),
  claim: Type.Union([status('claimed'), status('already-claimed'), status('sold-out'), status('not-found'), Failed]),
  get: Type.Union([Type.Object({ status: Type.Literal('found'), coupon: FlashCoupon }), status('not-found'), Failed])
} satisfies Record<RequestKind, TSchema>

export interface ReplyValue {
  create: Static<typeof ReplyValues.create>
  claim: Static<typeof ReplyValues.claim>
  get: Static<typeof ReplyValues.get>
}

export function encodeValue (value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value))
}

/** Parses and checks a request or reply value; a CouponsError FLASH_SALE_BAD_MESSAGE otherwise. */
export function decodeValue<T extends TSchema> (schema: T, value: Buffer | null, what: string): Static<T> {
  let parsed: unknown
  try {
    parsed = JSON.parse(value?.toString('utf8') ?? 'null')
  } catch (err) {
    throw new CouponsError('FLASH_SALE_BAD_MESSAGE', `${what} is not JSON`, { cause: err })
  }
  if (!Value.Check(schema, parsed)) {
    throw new CouponsError('FLASH_SALE_BAD_MESSAGE', `${what} has an unexpected shape: ${JSON.stringify(parsed).slice(0, 200)}`)
  }
  return parsed as Static<T>
}

/** A header's value as a string (KafkaJS hands headers over as Buffers). */
export function headerText (headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const value = headers?.[name]
  const first = Array.isArray(value) ? value[0] : value
  if (first === undefined || first === null) return undefined
  return Buffer.isBuffer(first) ? first.toString('utf8') : String(first)
}
