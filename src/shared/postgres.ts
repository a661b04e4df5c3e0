// PostgreSQL connections of the flash sale (the api in direct mode, the flash-sale consumer): one
// pool per process, with bounds on every wait so that an outage becomes an error, never a hang.
import { Pool, type PoolConfig } from 'pg'
import type { Logger } from './logger.js'

/** How long a statement may run (or wait for a row lock) in the server before it is cancelled. */
export const STATEMENT_TIMEOUT_MS = 5000

export function createPool (databaseUrl: string, role: string, logger: Logger, extra: PoolConfig = {}): Pool {
  const pool = new Pool({
    connectionString: databaseUrl,
    application_name: `coupons-${role}`,
    max: 10,
    // A refused connection fails at once; an unreachable host must not hold a request either.
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    // Cancelled in the server: the statement is rolled back, so its outcome is known (not applied).
    statement_timeout: STATEMENT_TIMEOUT_MS,
    // Given up in the client when the network stalls: the outcome is then unknown.
    query_timeout: STATEMENT_TIMEOUT_MS + 1000,
    ...extra
  })
  // An idle connection that dies (a server restart) is reported here; without a listener it would
  // crash the process. The pool replaces it on the next checkout.
  pool.on('error', (err) => { logger.warn({ err, role }, 'idle PostgreSQL connection lost') })
  return pool
}
