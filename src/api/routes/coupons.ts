// GET /coupons/:code, the route checkout calls (DESIGN section 7). Malformed input is answered
// without touching Redis; a Redis that cannot answer is a 503, never a 404.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { CODE_SHAPE, isCodeShape } from '../../shared/code-rule.js'
import { HttpError } from '../http-errors.js'
import { CouponParams, InvalidCoupon, ValidCoupon, errors } from '../schemas.js'
import { ValidSet } from '../valid-set.js'

export interface CouponRoutesOptions {
  redisPrefix: string
  /** per client and window; 0 disables */
  rateLimitMax: number
  rateLimitWindowMs: number
}

/** Seconds a client should wait after a 503: a Redis outage is usually short… */
export const RETRY_AFTER_OUTAGE_SECONDS = 5
/** …while the first ingest after a fresh install takes minutes. */
export const RETRY_AFTER_UNPUBLISHED_SECONDS = 60

const WARN_INTERVAL_MS = 10_000

const couponRoutes: FastifyPluginAsyncTypebox<CouponRoutesOptions> = async (fastify, options) => {
  const validSet = new ValidSet(fastify.redis, options.redisPrefix)
  const lookups = fastify.metrics.lookups
  let lastWarnedAt = 0

  fastify.get('/coupons/:code', {
    schema: {
      tags: ['coupons'],
      summary: 'Is this promo code valid?',
      description: `Trims the code, checks its shape (${CODE_SHAPE}, case-sensitive) and looks it up in the published valid set. ` +
        '404 means "well formed but not valid"; when the answer is unknown (Redis unreachable, or no set published yet) the answer is 503 with Retry-After, never 404. ' +
        'Rate limited per client IP (RATE_LIMIT_MAX requests per RATE_LIMIT_WINDOW_MS).',
      params: CouponParams,
      response: {
        200: ValidCoupon,
        404: InvalidCoupon,
        ...errors(400, 429, 500, 503)
      }
    },
    config: {
      rateLimit: options.rateLimitMax > 0 ? { max: options.rateLimitMax, timeWindow: options.rateLimitWindowMs } : false
    }
  }, async (request, reply) => {
    const code = request.params.code.trim()
    if (!isCodeShape(code)) {
      lookups.malformed++
      throw new HttpError(400, `a code is ${CODE_SHAPE}`)
    }
    let lookup
    try {
      lookup = await validSet.lookup(code)
    } catch (err) {
      lookups.unavailable++
      // During an outage every request fails alike: one line per interval, not one per request.
      if (Date.now() - lastWarnedAt > WARN_INTERVAL_MS) {
        lastWarnedAt = Date.now()
        request.log.warn({ err }, 'redis lookup failed; answering 503 (logged once per 10 s)')
      }
      throw new HttpError(503, 'the valid set cannot be read right now', { cause: err, retryAfter: RETRY_AFTER_OUTAGE_SECONDS, log: false })
    }
    switch (lookup) {
      case 'valid':
        lookups.valid++
        return reply.code(200).send({ code, valid: true })
      case 'invalid':
        lookups.invalid++
        // Not an error: the answer checkout asked for ("well formed, not valid").
        return reply.code(404).send({ code, valid: false })
      case 'unpublished':
        lookups.unavailable++
        throw new HttpError(503, 'no valid set has been published yet', { retryAfter: RETRY_AFTER_UNPUBLISHED_SECONDS, log: false })
    }
  })
}

export default couponRoutes
