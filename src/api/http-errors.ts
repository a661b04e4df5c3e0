// Errors that carry their HTTP status to the app's one error handler, which alone builds error
// bodies and sets Retry-After: routes and hooks throw an HttpError and never send an error themselves.
import { setTimeout as sleep } from 'node:timers/promises'
import { TYPE_HEALTH_CHECK } from '@fastify/under-pressure'

export class HttpError extends Error {
  readonly statusCode: number
  /** seconds, sent as Retry-After */
  readonly retryAfter: number | undefined
  /** a stable machine-readable reason, sent in the body beside the message (e.g. SOLD_OUT) */
  readonly code: string | undefined
  /**
   * false: the error handler does not log this 5xx, because the route logs it at its own rate (an
   * outage fails every request alike) or because it is an expected state (no set published yet).
   */
  readonly log: boolean

  constructor (statusCode: number, message: string, options: { cause?: unknown, retryAfter?: number, code?: string, log?: boolean } = {}) {
    super(message, { cause: options.cause })
    this.name = 'HttpError'
    this.statusCode = statusCode
    this.retryAfter = options.retryAfter
    this.code = options.code
    this.log = options.log ?? true
  }
}

/**
 * Runs a call to Redis, BullMQ or Kafka for an admin request. Any failure becomes a 503 whose
 * cause is logged, and so does a call that takes longer than `timeoutMs`: BullMQ waits for its
 * connection while Redis is down, and an operator should get an answer, not a hung request.
 */
export async function fromDependency<T> (what: string, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  const abort = new AbortController()
  try {
    return await Promise.race([
      call(),
      sleep(timeoutMs, undefined, { signal: abort.signal }).then(() => { throw new Error(`no answer within ${timeoutMs} ms`) })
    ])
  } catch (err) {
    throw new HttpError(503, `${what} is unavailable right now`, { cause: err, retryAfter: 5 })
  } finally {
    abort.abort()
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** under-pressure reads a route's own handler here (its types do not declare it) */
    pressureHandler?: typeof shedOnlyWhenOverloaded
  }
}

/** Seconds to wait after a 503 from load shedding, as under-pressure answers for the other routes. */
export const RETRY_AFTER_OVERLOAD_SECONDS = 5

/**
 * An under-pressure `pressureHandler` for the routes that do not need Redis (the flash sale,
 * /metrics): a failing Redis health check lets them through, an overloaded process sheds them.
 */
export async function shedOnlyWhenOverloaded (_request: unknown, _reply: unknown, type: string): Promise<void> {
  if (type === TYPE_HEALTH_CHECK) return
  throw new HttpError(503, 'the server is overloaded; try again shortly', { retryAfter: RETRY_AFTER_OVERLOAD_SECONDS })
}
