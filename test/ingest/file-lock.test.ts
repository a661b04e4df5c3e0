// The per-file lock against the real Redis: one holder at a time, renewed while held, released
// only by its holder, a holder that lost it sees its signal abort, and a holder cut off from Redis
// (through a TCP proxy the test breaks) stops before its lock could expire. Short timings keep each
// case to a few seconds; the defaults only scale them.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { acquireFileLock, createLockRedis, DEFAULT_LOCK_TIMING, withFileLock, type LockTiming } from '../../src/ingest/file-lock.js'
import { isCouponsError } from '../../src/shared/errors.js'
import { redisKeys } from '../../src/shared/redis-keys.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js'
import { deleteRedisPrefix, silentLogger, testConfig } from '../helpers/test-env.js'
import type { RedisClient } from '../../src/shared/redis.js'

const timing: LockTiming = { ttlMs: 3000, renewEveryMs: 500, callTimeoutMs: 300, marginMs: 1000, pollMs: 100 }
/** what timers and a busy test machine may add to a bound */
const SLACK_MS = 250

interface Setup {
  /** a plain client, for arranging and observing */
  redis: Redis
  /** the lock's own fail-fast connection, straight to Redis */
  lockRedis: RedisClient
  key: string
  redisUrl: string
}

async function setup (t: Test): Promise<Setup> {
  const config = testConfig('file-lock')
  const redis = new Redis(config.redisUrl)
  const lockRedis = createLockRedis({ redisUrl: config.redisUrl, redisClusterNodes: [] }, silentLogger, timing)
  t.teardown(async () => {
    lockRedis.disconnect()
    await deleteRedisPrefix(redis, config.redisPrefix)
    await redis.quit()
  })
  return { redis, lockRedis, key: redisKeys(config.redisPrefix).ingestLock('couponbase1.gz'), redisUrl: config.redisUrl }
}

/** A lock connection that goes through a proxy the test can break. */
async function throughProxy (t: Test, redisUrl: string): Promise<{ proxy: TcpProxy, lockRedis: RedisClient }> {
  const target = new URL(redisUrl)
  const proxy = await startTcpProxy(target.hostname, Number(target.port === '' ? 6379 : target.port))
  const lockRedis = createLockRedis({ redisUrl: proxy.url(redisUrl), redisClusterNodes: [] }, silentLogger, timing)
  t.teardown(async () => {
    lockRedis.disconnect()
    await proxy.close()
  })
  return { proxy, lockRedis }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('a second holder waits, told once, until the first releases the lock', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const first = await acquireFileLock(lockRedis, key, { timing })
  const ttl = await redis.pttl(key)
  t.ok(ttl > timing.ttlMs - 500 && ttl <= timing.ttlMs, `held with its ${timing.ttlMs} ms TTL (${ttl} ms left)`)

  let waits = 0
  let acquired = false
  const second = acquireFileLock(lockRedis, key, { timing, onWait: () => { waits++ } }).then((lock) => { acquired = true; return lock })
  await sleep(timing.ttlMs + 500)
  t.equal(acquired, false, 'the second holder is still waiting, past one TTL: the first renews')
  t.equal(waits, 1, 'onWait is called once, however long it waits')

  await first.release()
  const lock = await second
  t.equal(waits, 1)
  t.equal(first.signal.aborted, false, 'releasing does not abort the released lock\'s signal')
  await lock.release()
  t.equal(await redis.exists(key), 0, 'released: the key is gone')
})

t.test('a free lock is taken at once, without waiting, with the default timing', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  let waits = 0
  const lock = await acquireFileLock(lockRedis, key, { onWait: () => { waits++ } })
  t.equal(waits, 0)
  const ttl = await redis.pttl(key)
  t.ok(ttl > DEFAULT_LOCK_TIMING.ttlMs - 1000, `the default TTL, ${DEFAULT_LOCK_TIMING.ttlMs} ms (${ttl} ms left)`)
  await lock.release()
})

t.test('the holder renews the lock before it expires', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const lock = await acquireFileLock(lockRedis, key, { timing })
  t.teardown(() => lock.release())
  await sleep(timing.ttlMs)
  const ttl = await redis.pttl(key)
  t.ok(ttl > timing.ttlMs - timing.renewEveryMs - SLACK_MS, `${ttl} ms left after a whole TTL: renewed`)
  t.equal(lock.signal.aborted, false)
})

t.test('a holder whose lock another holder took sees its signal abort with INGEST_LOCK_LOST, and cannot release the other\'s lock', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const lock = await acquireFileLock(lockRedis, key, { timing })
  // As if the lock had expired while Redis was unreachable and another production took it.
  await redis.set(key, 'another-holder', 'PX', timing.ttlMs * 10)
  await waitFor('the lock loss to be noticed at the next renewal', async () => lock.signal.aborted, timing.renewEveryMs + 1000, 20)
  t.ok(isCouponsError(lock.signal.reason, 'INGEST_LOCK_LOST'), `aborted with INGEST_LOCK_LOST (got ${String(lock.signal.reason)})`)
  await lock.release()
  t.equal(await redis.get(key), 'another-holder', 'release leaves the other holder\'s lock alone')
})

t.test('assertHeld asks Redis, between renewals: it passes while the lock is the holder\'s with more than the margin left, and throws otherwise', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const lock = await acquireFileLock(lockRedis, key, { timing: { ...timing, renewEveryMs: 1500 } })
  t.teardown(() => lock.release())
  await lock.assertHeld()
  await redis.pexpire(key, timing.marginMs - 100)
  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_UNREACHABLE', message: /not more than the 1000 ms margin/ }, 'held, but too close to its expiry to publish')
  await redis.set(key, 'another-holder', 'PX', timing.ttlMs)
  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_LOST' })
  t.notOk(lock.signal.aborted, 'before the next renewal the signal has not noticed yet')
  await redis.del(key)
  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_LOST' }, 'an expired lock is lost too')
})

t.test('cut off from Redis, the holder aborts before its lock can expire, and another holder gets it only once it has', async (t) => {
  const { redis, key, redisUrl } = await setup(t)
  const { proxy, lockRedis } = await throughProxy(t, redisUrl)
  const lock = await acquireFileLock(lockRedis, key, { timing })
  await sleep(timing.renewEveryMs * 2 + 100)
  await lock.assertHeld()

  const leftAtCut = await redis.pttl(key)
  const cutAt = performance.now()
  await proxy.cut()
  // The lock cannot outlive this: nobody renews it any more.
  const expiresBy = cutAt + leftAtCut

  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_UNREACHABLE' }, 'assertHeld refuses at once: it cannot prove the lock is held')
  t.ok(performance.now() - cutAt < timing.callTimeoutMs + SLACK_MS, 'within the call timeout')

  await waitFor('the holder to give the lock up', async () => lock.signal.aborted, timing.ttlMs, 10)
  const abortedAt = performance.now()
  const reason = lock.signal.reason as Error
  t.ok(isCouponsError(reason, 'INGEST_LOCK_UNREACHABLE'), `aborted with INGEST_LOCK_UNREACHABLE: ${reason.message}`)
  t.match(reason.message, /no renewal confirmed by Redis/)
  t.ok(abortedAt - cutAt <= timing.ttlMs - timing.marginMs + SLACK_MS, `within ttl - margin of the cut (${Math.round(abortedAt - cutAt)} ms)`)
  t.ok(abortedAt < expiresBy - timing.marginMs + SLACK_MS, `about the margin before the lock could expire (${Math.round(expiresBy - abortedAt)} ms before)`)
  t.ok(await redis.pttl(key) > 0, 'the lock still exists when its holder stops: nobody else can have it yet')

  const releaseStarted = performance.now()
  await lock.release()
  t.ok(performance.now() - releaseStarted < timing.callTimeoutMs + SLACK_MS, 'release gives up within the call timeout')

  await proxy.restore()
  // Without an offline queue the connection refuses commands until it has reconnected.
  await waitFor('the lock connection to reconnect', async () => lockRedis.status === 'ready', 5000, 20)
  const next = await acquireFileLock(lockRedis, key, { timing })
  const acquiredAt = performance.now()
  t.teardown(() => next.release())
  t.ok(acquiredAt >= expiresBy - 50, `the next holder got it only once it expired (${Math.round(acquiredAt - expiresBy)} ms after)`)
})

t.test('when Redis stops answering (a partition), each call times out and the holder aborts before its lock can expire', async (t) => {
  const { redis, key, redisUrl } = await setup(t)
  const { proxy, lockRedis } = await throughProxy(t, redisUrl)
  const lock = await acquireFileLock(lockRedis, key, { timing })
  const leftAtStall = await redis.pttl(key)
  const stalledAt = performance.now()
  proxy.stall()
  t.teardown(() => proxy.restore())

  const checkStarted = performance.now()
  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_UNREACHABLE', message: /could not check .*did not answer in time/ })
  t.ok(performance.now() - checkStarted < timing.callTimeoutMs + SLACK_MS, 'assertHeld gives up within the call timeout instead of hanging')

  await waitFor('the holder to give the lock up', async () => lock.signal.aborted, timing.ttlMs, 10)
  const abortedAt = performance.now()
  t.ok(isCouponsError(lock.signal.reason, 'INGEST_LOCK_UNREACHABLE'), String(lock.signal.reason))
  t.ok(abortedAt < stalledAt + leftAtStall - timing.marginMs + SLACK_MS, `before the lock could expire (${Math.round(stalledAt + leftAtStall - abortedAt)} ms before)`)
  t.ok(await redis.pttl(key) > 0, 'still locked when its holder stops')
})

t.test('a holder that cannot reach Redis fails to take the lock at once with INGEST_LOCK_UNREACHABLE', async (t) => {
  const { key, redisUrl } = await setup(t)
  const { proxy, lockRedis } = await throughProxy(t, redisUrl)
  await proxy.cut()
  const started = performance.now()
  await t.rejects(acquireFileLock(lockRedis, key, { timing }), { code: 'INGEST_LOCK_UNREACHABLE', message: /could not take/ })
  t.ok(performance.now() - started < 2 * timing.callTimeoutMs + SLACK_MS, 'without waiting for the outage to end')
})

t.test('timings where a healthy holder could miss its own deadline are refused', async (t) => {
  const { lockRedis, key } = await setup(t)
  await t.rejects(acquireFileLock(lockRedis, key, { timing: { ttlMs: 3000, renewEveryMs: 2000, marginMs: 1000 } }), /must be below ttlMs/)
})

t.test('withFileLock releases the lock after the work, also when the work fails', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const result = await withFileLock(lockRedis, key, { timing }, async (signal) => {
    t.equal(await redis.exists(key), 1, 'held during the work')
    t.equal(signal.aborted, false)
    return 42
  })
  t.equal(result, 42)
  t.equal(await redis.exists(key), 0, 'released after the work')

  await t.rejects(withFileLock(lockRedis, key, { timing }, async () => { throw new Error('work failed') }), { message: 'work failed' })
  t.equal(await redis.exists(key), 0, 'released after the failed work')
})

t.test('withFileLock gives the work a signal that aborts with the caller\'s', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const caller = new AbortController()
  const reason = new Error('caller stopped')
  await withFileLock(lockRedis, key, { signal: caller.signal, timing }, async (signal) => {
    caller.abort(reason)
    t.equal(signal.aborted, true)
    t.equal(signal.reason, reason)
  })
  t.equal(await redis.exists(key), 0)
})

t.test('a waiter whose signal aborts gives up with INGEST_ABORTED', async (t) => {
  const { redis, lockRedis, key } = await setup(t)
  const holder = await acquireFileLock(lockRedis, key, { timing })
  t.teardown(() => holder.release())
  const caller = new AbortController()
  const waiting = acquireFileLock(lockRedis, key, { signal: caller.signal, timing, onWait: () => { caller.abort() } })
  await t.rejects(waiting, { name: 'CouponsError', code: 'INGEST_ABORTED', message: `aborted while waiting for ${key}` })
  t.equal(await redis.exists(key), 1, 'the holder keeps its lock')
})
