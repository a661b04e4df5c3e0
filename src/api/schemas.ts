// TypeBox schemas of every request and response of the HTTP API. They validate, serialize and
// generate the OpenAPI document, so the document is never written by hand.
import { Type, type Static } from 'typebox'

/** The body of every error answer: Fastify's own shape, so validation errors look alike. */
export const ErrorResponse = Type.Object({
  statusCode: Type.Integer({ examples: [400] }),
  error: Type.String({ examples: ['Bad Request'] }),
  code: Type.Optional(Type.String({ description: 'A stable reason for clients to branch on, where the status alone does not say it', examples: ['SOLD_OUT'] })),
  message: Type.String({ examples: ['a code is 8 to 10 ASCII letters or digits'] })
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

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()])

export const IngestProgress = Type.Object({
  percent: Type.Number({ minimum: 0, maximum: 100 }),
  bytesRead: Type.Integer({ description: 'compressed bytes read so far' }),
  bytesTotal: Type.Integer({ description: 'compressed size of the file' }),
  lines: Type.Integer(),
  codes: Type.Integer()
})

export const RunFile = Type.Object({
  file: Type.String({ examples: ['couponbase1.gz'] }),
  jobId: Type.String(),
  state: Type.String({ description: 'BullMQ job state: waiting, active, completed, failed, delayed…' }),
  progress: Nullable(IngestProgress),
  attemptsMade: Type.Integer(),
  failedReason: Nullable(Type.String()),
  segmentId: Nullable(Type.String({ description: 'the segment the file produced, once complete' }))
})

export const RunResult = Type.Object({
  state: Type.Union([Type.Literal('applied'), Type.Literal('failed'), Type.Literal('superseded')], {
    description: 'applied: swapped in; failed: nothing swapped (see error); superseded: a set from newer segments was applied first'
  }),
  appliedAt: Nullable(Type.String({ format: 'date-time' })),
  validCount: Nullable(Type.Integer()),
  swapMs: Nullable(Type.Number()),
  error: Nullable(Type.String())
}, { description: 'What the aggregator did with the run' })

export const Run = Type.Object({
  runId: Type.String(),
  state: Type.String({ description: 'BullMQ state of the run (the parent job of the flow)' }),
  source: Type.Union([Type.Literal('admin'), Type.Literal('schedule'), Type.Literal('cli')]),
  requestedAt: Type.String({ format: 'date-time' }),
  finishedAt: Nullable(Type.String({ format: 'date-time' })),
  files: Type.Array(RunFile),
  result: Nullable(RunResult)
})

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

export const IngestAccepted = Type.Object({
  runId: Type.String(),
  jobs: Type.Array(Type.Object({ id: Type.String(), file: Type.String() }))
}, { description: 'The run is queued; follow it at GET /admin/runs/{runId}' })

export const Status = Type.Object({
  lastSwapAt: Nullable(Type.String({ format: 'date-time', description: 'when the live set was last swapped' })),
  generation: Nullable(Type.String({ description: 'run id of the live set' })),
  validCount: Nullable(Type.Integer({ description: 'codes in the live set' })),
  queue: Type.Record(Type.String(), Type.Integer(), { description: 'ingest jobs by BullMQ state' }),
  schedule: Type.Object({
    pattern: Nullable(Type.String({ description: 'cron pattern of the daily run; null when off' })),
    tz: Type.String(),
    next: Nullable(Type.String({ format: 'date-time', description: 'next scheduled run' }))
  })
})
