// A Redis lock per file, held while a file is produced (by a queued job or `coupons ingest`): a
// production started while another of the same file is still active waits for it instead of
// producing the file twice at once.
// (Each attempt has its own segment anyway, so even without the lock two productions could never
// mix into one segment; the lock saves the duplicate work and keeps the order of runs.)
//
// The lock expires unless renewed, so a crashed holder frees it within its TTL. A holder must stop
// before another can take the lock, so it never trusts a lock it cannot see: it counts from the
// moment it SENT its last successful renewal (Redis set the new expiry at or after that moment),
// and a local timer aborts its `signal` a safety margin before that expiry whatever Redis does
// meanwhile. A renewal that finds the lock taken aborts at once (INGEST_LOCK_LOST); renewals that
// fail or hang (Redis unreachable) are retried until that deadline, then the signal aborts with
// INGEST_LOCK_UNREACHABLE. `assertHeld`, right before a manifest, passes only when Redis answers
// in time that the lock is this holder's with more than the margin left.
//
// Every call is bounded by its own timeout (Promise.race), so the guarantee holds whatever client
// it is given. The lock should still get its own connection (createLockRedis): without an offline
// queue and without resending unanswered commands, so that a call that timed out during an outage
// is never executed later (a late SET NX would take a lock nobody holds; a late renewal would hold
// an abandoned one for another TTL). The BullMQ `worker` connection queues commands for the whole
// outage, which is what made the old lock hang.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { CouponsError } from '../shared/errors.js'
import type { Logger } from '../shared/logger.js'
import { createRedis, type RedisClient, type RedisTarget } from '../shared/redis.js'

export interface LockTiming {
  /** how long the lock lives without a renewal: how late a crashed holder frees it */
  ttlMs: number
  /** how often the holder renews it */
  renewEveryMs: number
  /** the most a single Redis call of the lock may take */
  callTimeoutMs: number
  /** the holder gives the lock up (and assertHeld refuses) this long before it could expire */
  marginMs: number
  /** how often a waiter tries to take the lock */
  pollMs: number
}

export const DEFAULT_LOCK_TIMING: LockTiming = { ttlMs: 30_000, renewEveryMs: 5000, callTimeoutMs: 2000, marginMs: 5000, pollMs: 500 }

export interface FileLockOptions {
  signal?: AbortSignal
  /** called once if the lock is taken and the caller has to wait */
  onWait?: () => void
  timing?: Partial<LockTiming>
}

export interface FileLock {
  /**
   * Aborts with INGEST_LOCK_LOST when a renewal finds the lock taken by another holder, and with
   * INGEST_LOCK_UNREACHABLE, before the lock can expire, when Redis did not confirm a renewal in time.
   */
  readonly signal: AbortSignal
  /**
   * Resolves only when Redis answers within the call timeout that the lock is still this holder's,
   * with more than the margin left; throws INGEST_LOCK_LOST or INGEST_LOCK_UNREACHABLE otherwise.
   */
  assertHeld: () => Promise<void>
  /** Best effort and bounded: an unreachable Redis leaves the lock to expire. */
  release: () => Promise<void>
}

const RELEASE = 'if redis.call(\'get\', KEYS[1]) == ARGV[1] then return redis.call(\'del\', KEYS[1]) else return 0 end'
const RENEW = 'if redis.call(\'get\', KEYS[1]) == ARGV[1] then return redis.call(\'pexpire\', KEYS[1], ARGV[2]) else return 0 end'
/** The lock's remaining ms when it is the caller's, -3 when it is not (-2 and -1 are PTTL's own). */
const REMAINING = 'if redis.call(\'get\', KEYS[1]) == ARGV[1] then return redis.call(\'pttl\', KEYS[1]) else return -3 end'

/**
 * A connection for the lock alone: commands fail at once while disconnected instead of waiting in
 * an offline queue, a command sent before a disconnection is not resent after it, and none takes
 * longer than the lock's call timeout.
 */
export function createLockRedis (target: RedisTarget, logger: Logger, timing: Partial<LockTiming> = {}): RedisClient {
  return createRedis(target, 'producer', logger, {
    connectionName: 'coupons-ingest-lock',
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: timing.callTimeoutMs ?? DEFAULT_LOCK_TIMING.callTimeoutMs,
    connectTimeout: timing.callTimeoutMs ?? DEFAULT_LOCK_TIMING.callTimeoutMs
  })
}

function resolveTiming (partial: Partial<LockTiming> = {}): LockTiming {
  const timing = { ...DEFAULT_LOCK_TIMING, ...partial }
  const { ttlMs, renewEveryMs, callTimeoutMs, marginMs } = timing
  // A healthy holder must always confirm a renewal before its own deadline, or it would abort for nothing.
  if (renewEveryMs + callTimeoutMs >= ttlMs - marginMs || marginMs <= 0) {
    throw new Error(`lock timing: renewEveryMs (${renewEveryMs}) + callTimeoutMs (${callTimeoutMs}) must be below ttlMs (${ttlMs}) - marginMs (${marginMs}), and marginMs above 0`)
  }
  return timing
}

/** One Redis call of the lock: the answer, or a rejection after at most `ms`. */
async function bounded<T> (ms: number, what: string, call: () => Promise<T>): Promise<T> {
  const timeout = new AbortController()
  try {
    return await Promise.race([
      call(),
      sleep(ms, undefined, { signal: timeout.signal }).then(() => { throw new Error(`${what}: no answer from Redis within ${ms} ms`) })
    ])
  } finally {
    timeout.abort()
  }
}

/**
 * A connection without an offline queue refuses commands until it is ready: a fresh one gets its
 * call timeout to connect.
 */
export async function untilReady (redis: RedisClient, ms: number): Promise<void> {
  if (redis.status === 'ready') return
  if (redis.status === 'wait') redis.connect().catch(() => {})
  const done = new AbortController()
  try {
    await Promise.race([
      new Promise<void>((resolve) => { redis.once('ready', resolve); done.signal.addEventListener('abort', () => { redis.off('ready', resolve) }) }),
      sleep(ms, undefined, { signal: done.signal }).then(() => { throw new Error(`Redis not ready within ${ms} ms (${redis.status})`) })
    ])
  } finally {
    done.abort()
  }
}

/** Waits until the lock is free, then holds it until release(); `onWait` is called once if it has to wait. */
export async function acquireFileLock (redis: RedisClient, key: string, options: FileLockOptions = {}): Promise<FileLock> {
  const timing = resolveTiming(options.timing)
  const { ttlMs, renewEveryMs, callTimeoutMs, marginMs, pollMs } = timing
  const token = randomBytes(8).toString('hex')
  const unreachable = (err: unknown, doing: string): CouponsError => new CouponsError('INGEST_LOCK_UNREACHABLE',
    `${doing} ${key}: Redis did not answer in time (${(err as Error).message})`, { cause: err, retriable: true })

  let waited = false
  let heldFrom: number
  for (;;) {
    if (options.signal?.aborted === true) throw new CouponsError('INGEST_ABORTED', `aborted while waiting for ${key}`, { retriable: true })
    const sentAt = performance.now()
    let taken: string | null
    try {
      await untilReady(redis, callTimeoutMs)
      taken = await bounded(callTimeoutMs, 'taking the lock', () => redis.set(key, token, 'PX', ttlMs, 'NX'))
    } catch (err) {
      throw unreachable(err, 'could not take')
    }
    if (taken === 'OK') { heldFrom = sentAt; break }
    if (!waited) { waited = true; options.onWait?.() }
    await sleep(pollMs)
  }

  const lost = new AbortController()
  let released = false
  /** when the last confirmed renewal (or the SET) was sent: the lock lives at least ttlMs from then */
  let confirmedAt = heldFrom
  let lastError: unknown = null
  const giveUp = (reason: CouponsError): void => {
    if (lost.signal.aborted) return
    clearTimeout(renewal)
    clearTimeout(deadline)
    lost.abort(reason)
  }
  const onDeadline = (): void => {
    const silent = Math.round(performance.now() - confirmedAt)
    giveUp(new CouponsError('INGEST_LOCK_UNREACHABLE',
      `gave up ${key}: no renewal confirmed by Redis for ${silent} ms, and it expires ${ttlMs} ms after the last one; ` +
      `stopping ${marginMs} ms before another holder could take it (last error: ${lastError instanceof Error ? lastError.message : 'none'})`,
      { cause: lastError, retriable: true }))
  }
  // Fires on time even when a renewal hangs: it does not wait for Redis.
  let deadline = setTimeout(onDeadline, heldFrom + ttlMs - marginMs - performance.now())
  let renewal: NodeJS.Timeout
  const renew = async (): Promise<void> => {
    const sentAt = performance.now()
    try {
      const renewed = await bounded(callTimeoutMs, 'renewing the lock', () => redis.eval(RENEW, 1, key, token, ttlMs))
      if (released || lost.signal.aborted) return
      if (renewed === 0) {
        giveUp(new CouponsError('INGEST_LOCK_LOST', `lost ${key} to another holder (it expired while this holder could not renew it)`, { retriable: true }))
        return
      }
      confirmedAt = sentAt
      lastError = null
      clearTimeout(deadline)
      deadline = setTimeout(onDeadline, confirmedAt + ttlMs - marginMs - performance.now())
      deadline.unref()
      renewal = setTimeout(renew, renewEveryMs)
    } catch (err) {
      if (released || lost.signal.aborted) return
      // Tried again soon: a blip costs nothing, and the deadline decides when to give up.
      lastError = err
      renewal = setTimeout(renew, Math.min(renewEveryMs, callTimeoutMs))
    }
    renewal.unref()
  }
  renewal = setTimeout(renew, renewEveryMs)
  renewal.unref()
  deadline.unref()

  return {
    signal: lost.signal,
    async assertHeld () {
      if (lost.signal.aborted) throw lost.signal.reason
      const sentAt = performance.now()
      let remaining: number
      try {
        remaining = Number(await bounded(callTimeoutMs, 'checking the lock', () => redis.eval(REMAINING, 1, key, token)))
      } catch (err) {
        throw unreachable(err, 'could not check')
      }
      if (remaining === -3 || remaining === -2) throw new CouponsError('INGEST_LOCK_LOST', `${key} is no longer this holder's (expired or taken by another holder)`, { retriable: true })
      // Redis measured it some time during the call: count it from the moment the call was sent.
      const left = remaining - (performance.now() - sentAt)
      if (left <= marginMs) {
        throw new CouponsError('INGEST_LOCK_UNREACHABLE', `${key} has only ${Math.round(left)} ms left, not more than the ${marginMs} ms margin`, { retriable: true })
      }
    },
    async release () {
      if (released) return
      released = true
      clearTimeout(renewal)
      clearTimeout(deadline)
      await bounded(callTimeoutMs, 'releasing the lock', () => redis.eval(RELEASE, 1, key, token)).catch(() => {})
    }
  }
}

/**
 * Runs `work` while holding the file's lock. `work` gets a signal that aborts when the caller's
 * does or when the lock is lost (a producer that lost its lock stops before writing a manifest),
 * and the lock itself, to check right before the manifest.
 */
export async function withFileLock<T> (redis: RedisClient, key: string, options: FileLockOptions, work: (signal: AbortSignal, lock: FileLock) => Promise<T>): Promise<T> {
  const lock = await acquireFileLock(redis, key, options)
  try {
    return await work(options.signal === undefined ? lock.signal : AbortSignal.any([options.signal, lock.signal]), lock)
  } finally {
    await lock.release()
  }
}
