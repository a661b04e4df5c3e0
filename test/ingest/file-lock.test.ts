// The per-file lock against the real Redis: one holder at a time, renewed while held, released
// only by its holder, and a holder that lost it sees its signal abort.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { acquireFileLock, withFileLock } from '../../src/ingest/file-lock.js'
import { isCouponsError } from '../../src/shared/errors.js'
import { redisKeys } from '../../src/shared/redis-keys.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { deleteRedisPrefix, testConfig } from '../helpers/test-env.js'

/** The lock's TTL and renewal period (file-lock.ts). */
const LOCK_TTL_MS = 30_000
const RENEW_EVERY_MS = 10_000

async function setup (t: Test): Promise<{ redis: Redis, key: string }> {
  const config = testConfig('file-lock')
  const redis = new Redis(config.redisUrl)
  t.teardown(async () => {
    await deleteRedisPrefix(redis, config.redisPrefix)
    await redis.quit()
  })
  return { redis, key: redisKeys(config.redisPrefix).ingestLock('couponbase1.gz') }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('a second holder waits, told once, until the first releases the lock', async (t) => {
  const { redis, key } = await setup(t)
  const first = await acquireFileLock(redis, key)
  const ttl = await redis.pttl(key)
  t.ok(ttl > LOCK_TTL_MS - 5000 && ttl <= LOCK_TTL_MS, `held with its ${LOCK_TTL_MS} ms TTL (${ttl} ms left)`)

  let waits = 0
  let acquired = false
  const second = acquireFileLock(redis, key, { onWait: () => { waits++ } }).then((lock) => { acquired = true; return lock })
  await sleep(1500)
  t.equal(acquired, false, 'the second holder is still waiting')
  t.equal(waits, 1, 'onWait is called once, however long it waits')

  await first.release()
  const lock = await second
  t.equal(waits, 1)
  t.equal(first.signal.aborted, false, 'releasing does not abort the released lock\'s signal')
  await lock.release()
  t.equal(await redis.exists(key), 0, 'released: the key is gone')
})

t.test('a free lock is taken at once, without waiting', async (t) => {
  const { redis, key } = await setup(t)
  let waits = 0
  const lock = await acquireFileLock(redis, key, { onWait: () => { waits++ } })
  t.equal(waits, 0)
  await lock.release()
})

t.test('the holder renews the lock before it expires', async (t) => {
  const { redis, key } = await setup(t)
  const lock = await acquireFileLock(redis, key)
  t.teardown(() => lock.release())
  await sleep(RENEW_EVERY_MS + 1500)
  const ttl = await redis.pttl(key)
  // Without the renewal about LOCK_TTL_MS - RENEW_EVERY_MS - 1500 ms would be left.
  t.ok(ttl > LOCK_TTL_MS - 3000, `${ttl} ms left after ${RENEW_EVERY_MS + 1500} ms: renewed`)
  t.equal(lock.signal.aborted, false)
})

t.test('a holder whose lock another holder took sees its signal abort with INGEST_LOCK_LOST, and cannot release the other\'s lock', async (t) => {
  const { redis, key } = await setup(t)
  const lock = await acquireFileLock(redis, key)
  // As if the lock had expired while Redis was unreachable and another production took it.
  await redis.set(key, 'another-holder', 'PX', LOCK_TTL_MS)
  await waitFor('the lock loss to be noticed at the next renewal', async () => lock.signal.aborted, RENEW_EVERY_MS + 5000)
  t.ok(isCouponsError(lock.signal.reason, 'INGEST_LOCK_LOST'), `aborted with INGEST_LOCK_LOST (got ${String(lock.signal.reason)})`)
  await lock.release()
  t.equal(await redis.get(key), 'another-holder', 'release leaves the other holder\'s lock alone')
})

t.test('assertHeld answers at once, between renewals: it passes while the lock is the holder\'s and throws INGEST_LOCK_LOST after', async (t) => {
  const { redis, key } = await setup(t)
  const lock = await acquireFileLock(redis, key)
  t.teardown(() => lock.release())
  await lock.assertHeld()
  await redis.set(key, 'another-holder', 'PX', LOCK_TTL_MS)
  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_LOST' })
  t.notOk(lock.signal.aborted, 'before the next renewal the signal has not noticed yet')
  await redis.del(key)
  await t.rejects(lock.assertHeld(), { code: 'INGEST_LOCK_LOST' }, 'an expired lock is lost too')
})

t.test('withFileLock releases the lock after the work, also when the work fails', async (t) => {
  const { redis, key } = await setup(t)
  const result = await withFileLock(redis, key, {}, async (signal) => {
    t.equal(await redis.exists(key), 1, 'held during the work')
    t.equal(signal.aborted, false)
    return 42
  })
  t.equal(result, 42)
  t.equal(await redis.exists(key), 0, 'released after the work')

  await t.rejects(withFileLock(redis, key, {}, async () => { throw new Error('work failed') }), { message: 'work failed' })
  t.equal(await redis.exists(key), 0, 'released after the failed work')
})

t.test('withFileLock gives the work a signal that aborts with the caller\'s', async (t) => {
  const { redis, key } = await setup(t)
  const caller = new AbortController()
  const reason = new Error('caller stopped')
  await withFileLock(redis, key, { signal: caller.signal }, async (signal) => {
    caller.abort(reason)
    t.equal(signal.aborted, true)
    t.equal(signal.reason, reason)
  })
  t.equal(await redis.exists(key), 0)
})

t.test('a waiter whose signal aborts gives up with INGEST_ABORTED', async (t) => {
  const { redis, key } = await setup(t)
  const holder = await acquireFileLock(redis, key)
  t.teardown(() => holder.release())
  const caller = new AbortController()
  const waiting = acquireFileLock(redis, key, { signal: caller.signal, onWait: () => { caller.abort() } })
  await t.rejects(waiting, { name: 'CouponsError', code: 'INGEST_ABORTED', message: `aborted while waiting for ${key}` })
  t.equal(await redis.exists(key), 1, 'the holder keeps its lock')
})
