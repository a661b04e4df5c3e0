// The flash-sale routes under /api/coupons (DESIGN section 11), the same in both modes: they call
// `fastify.flashSale` and turn its outcomes into statuses. A dependency failure is a 503 whose
// code says whether the request may still have been applied (OUTCOME_UNKNOWN) or surely was not
// (UNAVAILABLE), never a hang and never internals.
import { TypeBoxValidatorCompiler, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance } from 'fastify'
import { ClaimCouponBody, Claimed, CouponNameParams, CreateCouponBody, FlashCoupon, type RequestKind } from '../../flash-sale/contract.js'
import { isCouponsError } from '../../shared/errors.js'
import { HttpError, shedOnlyWhenOverloaded } from '../http-errors.js'
import { ErrorResponse } from '../schemas.js'

/** Seconds a client should wait after a 503: a flash sale does not last long. */
export const RETRY_AFTER_SECONDS = 2

const error = (description: string) => ({ ...ErrorResponse, description })

/**
 * under-pressure's health check is Redis, which the flash sale does not use: a Redis outage must
 * not take it down (its own dependency failures answer 503 by themselves). An overloaded process
 * still sheds these routes like every other.
 */
const pressureHandler = shedOnlyWhenOverloaded

const responses = {
  400: error('Malformed request: a body or name that does not match the schema (no extra fields, no type conversion)'),
  500: error('Unexpected error (details are in the server log)'),
  503: error('PostgreSQL (direct mode) or the flash-sale consumer (event-driven mode) cannot answer in time; see Retry-After. ' +
    'code OUTCOME_UNKNOWN: the request may still be applied (check GET /api/coupons/{name}); code UNAVAILABLE: it was not applied')
}

const flashSaleRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  // Fastify's default validator converts "100" to 100 and drops unknown fields; the flash sale's
  // bodies are strict: such a body is a 400. Applies to these routes only.
  fastify.setValidatorCompiler(TypeBoxValidatorCompiler)

  fastify.post('/api/coupons', {
    config: { pressureHandler },
    schema: {
      tags: ['flash-sale'],
      summary: 'Create a flash-sale coupon with its stock',
      description: 'Creates the coupon `name` with `amount` units, each claimable once by one user. 409 (code COUPON_EXISTS) when the name is taken.',
      body: CreateCouponBody,
      response: {
        201: { ...FlashCoupon, description: 'The coupon, with its whole stock and no claims' },
        409: error('A coupon with this name exists (code COUPON_EXISTS)'),
        ...responses
      }
    }
  }, async (request, reply) => {
    const { name } = request.body
    const outcome = await fromFlashSale(fastify, 'create', async () => fastify.flashSale.create(request.body), {
      unknown: `the coupon may still be created: check GET /api/coupons/${name} before creating it again`
    })
    if (outcome.status === 'exists') throw new HttpError(409, `a coupon named "${name}" exists`, { code: 'COUPON_EXISTS' })
    return reply.code(201).send(outcome.coupon)
  })

  fastify.post('/api/coupons/claim', {
    config: { pressureHandler },
    schema: {
      tags: ['flash-sale'],
      summary: 'Claim one unit of a coupon for a user',
      description: 'Each user claims a coupon at most once, while stock is left. 409 with code ALREADY_CLAIMED or SOLD_OUT; 404 (code COUPON_NOT_FOUND) when there is no such coupon. ' +
        'Claiming again after a 503 is safe: a claim is never counted twice.',
      body: ClaimCouponBody,
      response: {
        200: Claimed,
        404: error('No coupon with this name (code COUPON_NOT_FOUND)'),
        409: error('Refused: code ALREADY_CLAIMED (this user holds one) or SOLD_OUT (no stock left)'),
        ...responses
      }
    }
  }, async (request, reply) => {
    const { user_id: userId, coupon_name: couponName } = request.body
    const outcome = await fromFlashSale(fastify, 'claim', async () => fastify.flashSale.claim(request.body), {
      unknown: `the claim may still be applied: check GET /api/coupons/${couponName} and look for "${userId}" in claimed_by (claiming again is safe: it is never counted twice)`
    })
    switch (outcome.status) {
      case 'claimed': return reply.code(200).send({ user_id: userId, coupon_name: couponName })
      case 'already-claimed': throw new HttpError(409, `user "${userId}" has already claimed "${couponName}"`, { code: 'ALREADY_CLAIMED' })
      case 'sold-out': throw new HttpError(409, `"${couponName}" is sold out`, { code: 'SOLD_OUT' })
      case 'not-found': throw notFound(couponName)
    }
  })

  fastify.get('/api/coupons/:name', {
    config: { pressureHandler },
    schema: {
      tags: ['flash-sale'],
      summary: 'A coupon: its stock, what is left and who claimed it',
      description: 'claimed_by lists the users in claim order; amount - remaining_amount = its length.',
      params: CouponNameParams,
      response: {
        200: FlashCoupon,
        404: error('No coupon with this name (code COUPON_NOT_FOUND)'),
        ...responses
      }
    }
  }, async (request, reply) => {
    // Reading applies nothing: its only failure is UNAVAILABLE.
    const outcome = await fromFlashSale(fastify, 'get', async () => fastify.flashSale.get(request.params.name), {})
    if (outcome.status === 'not-found') throw notFound(request.params.name)
    return reply.code(200).send(outcome.coupon)
  })
}

function notFound (name: string): HttpError {
  return new HttpError(404, `no coupon named "${name}"`, { code: 'COUPON_NOT_FOUND' })
}

/**
 * Runs a flash-sale call and counts its outcome; its dependency failures become 503s. `unknown` is
 * the message for a request that may have been applied; without it (reads) every failure is
 * UNAVAILABLE. Anything else is unexpected: a 500, logged, its details hidden.
 */
async function fromFlashSale<T extends { status: string }> (fastify: FastifyInstance, kind: RequestKind, call: () => Promise<T>, messages: { unknown?: string }): Promise<T> {
  try {
    const outcome = await call()
    fastify.metrics.flashSaleRequest(kind, outcome.status)
    return outcome
  } catch (err) {
    if (isCouponsError(err, 'FLASH_SALE_OUTCOME_UNKNOWN') && messages.unknown !== undefined) {
      fastify.metrics.flashSaleRequest(kind, 'outcome-unknown')
      throw new HttpError(503, messages.unknown, { cause: err, retryAfter: RETRY_AFTER_SECONDS, code: 'OUTCOME_UNKNOWN' })
    }
    if (isCouponsError(err, 'FLASH_SALE_OUTCOME_UNKNOWN') || isCouponsError(err, 'FLASH_SALE_UNAVAILABLE')) {
      fastify.metrics.flashSaleRequest(kind, 'unavailable')
      throw new HttpError(503, 'the flash sale cannot answer right now; nothing was applied', { cause: err, retryAfter: RETRY_AFTER_SECONDS, code: 'UNAVAILABLE' })
    }
    fastify.metrics.flashSaleRequest(kind, 'error')
    throw err
  }
}

export default flashSaleRoutes
