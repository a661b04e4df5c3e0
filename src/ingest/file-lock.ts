// A Redis lock per file, held while a file is produced (by a queued job or `coupons ingest`): a
// production started while another of the same file is still active waits for it instead of
// producing the file twice at once.
// (Each attempt has its own segment anyway, so even without the lock two productions could never
// mix into one segment; the lock saves the duplicate work and keeps the order of runs.)
// The lock expires unless renewed, so a crashed holder frees it within LOCK_TTL_MS; a holder that
// finds at a renewal that the lock is no longer its own sees its `signal` abort, so it stops and
// never publishes a manifest it no longer has the right to.
import { randomBytes } from 'node:crypto'
import type { RedisClient } from '../shared/redis.js'
import { CouponsError } from '../shared/errors.js'

const LOCK_TTL_MS = 30_000
const RENEW_EVERY_MS = 10_000
const POLL_MS = 500

const RELEASE = 'if redis.call(\'get\', KEYS[1]) == ARGV[1] then return redis.call(\'del\', KEYS[1]) else return 0 end'
const RENEW = 'if redis.call(\'get\', KEYS[1]) == ARGV[1] then return redis.call(\'pexpire\', KEYS[1], ARGV[2]) else return 0 end'

export interface FileLock {
  /** aborts (reason: an INGEST_LOCK_LOST CouponsError) when a renewal finds the lock taken by another holder */
  readonly signal: AbortSignal
  /** throws INGEST_LOCK_LOST unless the lock is still this holder's now (between renewals the signal may lag) */
  assertHeld: () => Promise<void>
  release: () => Promise<void>
}

/** Waits until the lock is free, then holds it until release(); `onWait` is called once if it has to wait. */
export async function acquireFileLock (redis: RedisClient, key: string, options: { signal?: AbortSignal, onWait?: () => void } = {}): Promise<FileLock> {
  const token = randomBytes(8).toString('hex')
  let waited = false
  while ((await redis.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
    if (options.signal?.aborted === true) throw new CouponsError('INGEST_ABORTED', `aborted while waiting for ${key}`, { retriable: true })
    if (!waited) { waited = true; options.onWait?.() }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
  const lostError = (): CouponsError => new CouponsError('INGEST_LOCK_LOST', `lost ${key} to another holder (expired while Redis was unreachable?)`, { retriable: true })
  const lost = new AbortController()
  const timer = setInterval(() => {
    redis.eval(RENEW, 1, key, token, LOCK_TTL_MS).then((renewed) => {
      if (renewed !== 0) return
      clearInterval(timer)
      lost.abort(lostError())
    }, () => {})
  }, RENEW_EVERY_MS)
  timer.unref()
  return {
    signal: lost.signal,
    async assertHeld () {
      if (await redis.get(key) !== token) throw lostError()
    },
    async release () {
      clearInterval(timer)
      await redis.eval(RELEASE, 1, key, token).catch(() => {})
    }
  }
}

/**
 * Runs `work` while holding the file's lock. `work` gets a signal that aborts when the caller's
 * does or when the lock is lost (a producer that lost its lock stops before writing a manifest),
 * and the lock itself, to check right before the manifest.
 */
export async function withFileLock<T> (redis: RedisClient, key: string, options: { signal?: AbortSignal, onWait?: () => void }, work: (signal: AbortSignal, lock: FileLock) => Promise<T>): Promise<T> {
  const lock = await acquireFileLock(redis, key, options)
  try {
    return await work(options.signal === undefined ? lock.signal : AbortSignal.any([options.signal, lock.signal]), lock)
  } finally {
    await lock.release()
  }
}
