// Bearer-token checks of the api's protected routes (src/shared/bearer-token.ts does the compare):
// /admin with ADMIN_TOKEN, /metrics with METRICS_TOKEN. Without a configured token every request
// is refused: neither surface is ever open by accident.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { bearerCheck } from '../shared/bearer-token.js'
import { HttpError } from './http-errors.js'

/** An onRequest hook answering 401 (with WWW-Authenticate) unless `allowed` accepts the Authorization header. */
export function bearerAuth (allowed: (authorization: string | undefined) => boolean, realm: string, message: string) {
  return async function checkBearerToken (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (allowed(request.headers.authorization)) return
    reply.header('www-authenticate', `Bearer realm="${realm}"`)
    throw new HttpError(401, message)
  }
}

export function adminAuth (token: string | undefined) {
  return bearerAuth(bearerCheck(token), 'coupons-admin', 'a valid admin bearer token is required')
}
