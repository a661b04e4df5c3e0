// One error base for every role: a stable string code for logs, alerts and tests, the cause, and
// whether retrying the same work can help (BullMQ processors turn retriable=false into
// UnrecoverableError so that a corrupt file is not read five times).

export interface CouponsErrorOptions {
  cause?: unknown
  retriable?: boolean
}

export class CouponsError extends Error {
  readonly code: string
  readonly retriable: boolean

  constructor (code: string, message: string, options: CouponsErrorOptions = {}) {
    super(message, { cause: options.cause })
    this.name = 'CouponsError'
    this.code = code
    this.retriable = options.retriable ?? false
  }
}

export function isCouponsError (err: unknown, code?: string): err is CouponsError {
  return err instanceof CouponsError && (code === undefined || err.code === code)
}

/**
 * Flash sale (DESIGN section 11): why an operation has no outcome. The routes answer both
 * retriable codes with 503 and say in the body whether the request may still have been applied;
 * the direct store and the Kafka request/reply client throw the same codes.
 */
export const FLASH_SALE_ERRORS = {
  /** surely not applied (PostgreSQL or Kafka unreachable, a transient database error): safe to retry */
  unavailable: 'FLASH_SALE_UNAVAILABLE',
  /** may have been applied (the connection was lost after the statement or COMMIT was sent, a reply came too late) */
  outcomeUnknown: 'FLASH_SALE_OUTCOME_UNKNOWN',
  /** the database refused the statement for a reason a retry does not fix (a missing table, a bug) */
  storeFailed: 'FLASH_SALE_STORE_FAILED'
} as const
