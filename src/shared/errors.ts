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
