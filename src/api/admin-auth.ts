// Bearer-token check of the /admin routes. Both sides are hashed before the timing-safe compare,
// so neither the content nor the length of the token leaks through response times. Without a
// configured token every admin request is refused: the admin surface is never open.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { HttpError } from './http-errors.js'

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

const NO_TOKEN = Buffer.alloc(32)
const BEARER = /^Bearer +(\S+) *$/i

export function adminAuth (token: string | undefined) {
  const expected = token === undefined ? null : digest(token)
  return async function checkAdminToken (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const presented = BEARER.exec(request.headers.authorization ?? '')?.[1]
    // Compare even when a side is missing, so a refusal costs the same whatever its cause.
    const equal = timingSafeEqual(digest(presented ?? ''), expected ?? NO_TOKEN)
    if (equal && expected !== null && presented !== undefined) return
    reply.header('www-authenticate', 'Bearer realm="coupons-admin"')
    throw new HttpError(401, 'a valid admin bearer token is required')
  }
}
