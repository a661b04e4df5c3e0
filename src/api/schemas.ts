// TypeBox schemas of every request and response of the HTTP API. They validate, serialize and
// generate the OpenAPI document, so the document is never written by hand. What a run is (the run
// views, their progress, who started them) lives in src/shared/run-contract.ts, shared with the queues.
import { Type, type Static } from 'typebox'
import { CODE_SHAPE } from '../shared/code-rule.js'
import { CouponName, CouponSummary } from '../flash-sale/contract.js'
import { Nullable, Run, Schedule } from '../shared/run-contract.js'

/** The body of every error answer: Fastify's own shape, so validation errors look alike. */
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer({ examples: [400] }),
  error: Type.String({ examples: ['Bad Request'] }),
  code: Type.Optional(Type.String({ description: 'A stable reason for clients to branch on, where the status alone does not say it', examples: ['SOLD_OUT'] })),
  message: Type.String({ examples: [`a code is ${CODE_SHAPE}`] })
}, { description: 'What went wrong; internals are never shown' })
export type ErrorResponse = Static<typeof ErrorResponse>

type ErrorStatus = 400 | 401 | 404 | 429 | 500 | 503

/** Response entries for the error statuses a route can answer, each with its own description. */
export function errors<S extends ErrorStatus> (...statuses: S[]): Record<S, typeof ErrorResponse> {
  const descriptions: Record<number, string> = {
    400: 'Malformed request',
    401: 'Missing or wrong admin token',
    404: 'Not found',
    429: 'Too many requests from this client; see Retry-After',
    500: 'Unexpected error (details are in the server log)',
    503: 'A dependency (Redis) is unavailable or the server sheds load; see Retry-After'
  }
  return Object.fromEntries(statuses.map((status) => [status, { ...ErrorResponse, description: descriptions[status] }])) as unknown as Record<S, typeof ErrorResponse>
}

export const CouponParams = Type.Object({
  code: Type.String({ description: 'The code as typed by the customer; surrounding whitespace is ignored', examples: ['HAPPYHRS'] })
})
export type CouponParams = Static<typeof CouponParams>

export const ValidCoupon = Type.Object({
  code: Type.String({ examples: ['HAPPYHRS'] }),
  valid: Type.Literal(true)
}, { description: 'The code is in the published valid set' })

export const InvalidCoupon = Type.Object({
  code: Type.String({ examples: ['SUPER100'] }),
  valid: Type.Literal(false)
}, { description: 'The code is well formed but not in the published valid set' })

export const RunParams = Type.Object({
  runId: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._:-]+$' })
})
export type RunParams = Static<typeof RunParams>

export const RunsQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20, description: 'how many runs, newest first' })
})
export type RunsQuery = Static<typeof RunsQuery>

export const RunList = Type.Object({ runs: Type.Array(Run) })

export const IngestBody = Type.Object({
  files: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 255 }), {
    minItems: 1,
    maxItems: 64,
    description: 'Names from the configured COUPON_FILES (never paths); default: all of them'
  }))
}, { additionalProperties: false })
export type IngestBody = Static<typeof IngestBody>

export const Status = Type.Object({
  lastSwapAt: Nullable(Type.String({ format: 'date-time', description: 'when the live set was last swapped' })),
  generation: Nullable(Type.String({ description: 'run id of the live set' })),
  validCount: Nullable(Type.Integer({ description: 'codes in the live set' })),
  swapMs: Nullable(Type.Number({ description: 'how long the last swap took: the staging writes of every partition, summed over the aggregator instances (the atomic step itself takes well under a millisecond)' })),
  files: Type.Array(Type.String(), { description: 'the configured COUPON_FILES: what POST /admin/ingest accepts' }),
  queue: Type.Record(Type.String(), Type.Integer(), { description: 'ingest jobs by BullMQ state' }),
  schedule: Schedule
})

export const FlashSaleCouponsQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'coupons per page, in name order' }),
  after: Type.Optional({ ...CouponName, description: 'the last name of the previous page (its `next`)' })
})
export type FlashSaleCouponsQuery = Static<typeof FlashSaleCouponsQuery>

export const FlashSaleCouponList = Type.Object({
  coupons: Type.Array(CouponSummary),
  next: Nullable(Type.String({ description: 'pass as `after` for the next page; null on the last one' }))
})
