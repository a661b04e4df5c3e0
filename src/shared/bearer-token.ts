// The one bearer-token check of the system (the /admin routes, /metrics on the api and on the other
// roles' metrics servers). Both sides are hashed before the timing-safe compare, so neither the
// content nor the length of the token leaks through response times. Without a configured token
// nothing matches: a surface whose token is unset is closed, never open.
import { createHash, timingSafeEqual } from 'node:crypto'

function digest (value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

const NO_TOKEN = Buffer.alloc(32)
const BEARER = /^Bearer +(\S+) *$/i

/** A check of an Authorization header against `token`; always false when `token` is undefined. */
export function bearerCheck (token: string | undefined): (authorization: string | undefined) => boolean {
  const expected = token === undefined ? null : digest(token)
  return (authorization) => {
    const presented = BEARER.exec(authorization ?? '')?.[1]
    // Compare even when a side is missing, so a refusal costs the same whatever its cause.
    const equal = timingSafeEqual(digest(presented ?? ''), expected ?? NO_TOKEN)
    return equal && expected !== null && presented !== undefined
  }
}
