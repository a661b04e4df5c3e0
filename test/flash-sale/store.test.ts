import { DatabaseError, Pool } from 'pg'
import t from 'tap'
import { claimCoupon, claimCoupons, createCoupon, getCoupon, migrate, storeError } from '../../src/flash-sale/store.js'
import { isCouponsError } from '../../src/shared/errors.js'
import { createPool } from '../../src/shared/postgres.js'
import { freePort } from '../helpers/api-env.js'
import { TEST_DATABASE_URL, testSchema } from '../helpers/postgres-env.js'
import { silentLogger } from '../helpers/test-env.js'

t.test('migrations make the tables once; a second run applies nothing', async (t) => {
  const { pool } = await testSchema(t, { migrated: false })
  t.same(await migrate(pool, silentLogger), ['0001_coupons-and-claims'])
  t.same(await migrate(pool, silentLogger), [])
  const { rows } = await pool.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1')
  t.same(rows.map((row) => row.table_name), ['claims', 'coupons', 'pgmigrations'])
})

t.test('processes that start together migrate once between them', async (t) => {
  const { pool } = await testSchema(t, { migrated: false })
  const applied = await Promise.all([migrate(pool, silentLogger), migrate(pool, silentLogger), migrate(pool, silentLogger)])
  t.same(applied.flat(), ['0001_coupons-and-claims'])
})

t.test('the database refuses a negative stock, a stock above the amount and a user claiming twice', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'C', 2)
  await t.rejects(pool.query("UPDATE coupons SET remaining_amount = -1 WHERE name = 'C'"), { code: '23514' })
  await t.rejects(pool.query("UPDATE coupons SET remaining_amount = 3 WHERE name = 'C'"), { code: '23514' })
  await pool.query("INSERT INTO claims (coupon_name, user_id) VALUES ('C', 'u1')")
  await t.rejects(pool.query("INSERT INTO claims (coupon_name, user_id) VALUES ('C', 'u1')"), { code: '23505' })
  await t.rejects(pool.query("INSERT INTO claims (coupon_name, user_id) VALUES ('NOPE', 'u1')"), { code: '23503' })
})

t.test('a coupon is created with its whole stock, once', async (t) => {
  const { pool } = await testSchema(t)
  t.same(await createCoupon(pool, 'PROMO_SUPER', 100), { status: 'created', coupon: { name: 'PROMO_SUPER', amount: 100, remaining_amount: 100, claimed_by: [] } })
  t.same(await createCoupon(pool, 'PROMO_SUPER', 5), { status: 'exists' })
  t.same(await getCoupon(pool, 'PROMO_SUPER'), { status: 'found', coupon: { name: 'PROMO_SUPER', amount: 100, remaining_amount: 100, claimed_by: [] } })
  t.same(await getCoupon(pool, 'promo_super'), { status: 'not-found' }, 'names are case-sensitive')
})

t.test('a claim takes one from the stock; the same user again is already-claimed; an empty stock is sold-out', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'C', 2)
  t.same(await claimCoupon(pool, 'C', 'u1'), { status: 'claimed' })
  t.same(await claimCoupon(pool, 'C', 'u1'), { status: 'already-claimed' }, 'a redelivered claim changes nothing')
  t.same(await claimCoupon(pool, 'C', 'u2'), { status: 'claimed' })
  t.same(await claimCoupon(pool, 'C', 'u3'), { status: 'sold-out' })
  t.same(await claimCoupon(pool, 'C', 'u1'), { status: 'already-claimed' }, 'a holder asking again after the sell-out still hears already-claimed')
  t.same(await claimCoupon(pool, 'NOPE', 'u1'), { status: 'not-found' })
  t.same(await getCoupon(pool, 'C'), { status: 'found', coupon: { name: 'C', amount: 2, remaining_amount: 0, claimed_by: ['u1', 'u2'] } })
})

t.test('claimed_by lists users in claim order', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'C', 10)
  const users = ['zed', 'amy', 'mo', 'bob']
  for (const user of users) await claimCoupon(pool, 'C', user)
  await claimCoupons(pool, 'C', ['kim', 'al'])
  const found = await getCoupon(pool, 'C')
  t.same(found.status === 'found' && found.coupon.claimed_by, [...users, 'kim', 'al'])
})

t.test('a batch answers each claim in order: repeats in the batch, earlier holders and the sell-out', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'C', 3)
  t.same(await claimCoupon(pool, 'C', 'early'), { status: 'claimed' })
  const outcomes = await claimCoupons(pool, 'C', ['a', 'early', 'a', 'b', 'c', 'b', 'c', 'd'])
  t.same(outcomes.map((outcome) => outcome.status), [
    'claimed', // a
    'already-claimed', // early held one before the batch
    'already-claimed', // a again, within the batch
    'claimed', // b: the last unit
    'sold-out', // c
    'already-claimed', // b again
    'sold-out', // c again: still nothing for c
    'sold-out' // d
  ])
  t.same(await getCoupon(pool, 'C'), { status: 'found', coupon: { name: 'C', amount: 3, remaining_amount: 0, claimed_by: ['early', 'a', 'b'] } })
})

t.test('a batch delivered twice changes nothing the second time', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'C', 10)
  const batch = ['u1', 'u2', 'u3']
  t.same((await claimCoupons(pool, 'C', batch)).map((o) => o.status), ['claimed', 'claimed', 'claimed'])
  t.same((await claimCoupons(pool, 'C', batch)).map((o) => o.status), ['already-claimed', 'already-claimed', 'already-claimed'])
  const found = await getCoupon(pool, 'C')
  t.match(found, { status: 'found', coupon: { remaining_amount: 7, claimed_by: batch } })
})

t.test('a batch for a missing coupon is not-found for each claim; an empty batch needs no database', async (t) => {
  const { pool } = await testSchema(t)
  t.same(await claimCoupons(pool, 'NOPE', ['u1', 'u2']), [{ status: 'not-found' }, { status: 'not-found' }])
  t.same(await claimCoupons(new Pool({ connectionString: 'postgres://127.0.0.1:1/none' }), 'C', []), [])
})

t.test('1,000 concurrent claims by distinct users on a stock of 100: exactly 100 succeed', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'FLASH', 100)
  const users = Array.from({ length: 1000 }, (_, i) => `user_${i}`)
  const outcomes = await Promise.all(users.map(async (user) => claimCoupon(pool, 'FLASH', user)))
  const winners = users.filter((_, i) => outcomes[i].status === 'claimed')
  t.equal(winners.length, 100, '100 claimed')
  t.equal(outcomes.filter((o) => o.status === 'sold-out').length, 900, 'the others are sold-out')
  const found = await getCoupon(pool, 'FLASH')
  if (found.status !== 'found') throw new Error('coupon lost')
  t.equal(found.coupon.remaining_amount, 0)
  t.equal(new Set(found.coupon.claimed_by).size, 100, '100 distinct users')
  t.same([...found.coupon.claimed_by].sort(), [...winners].sort(), 'exactly the users told "claimed"')
})

t.test('concurrent batches and single claims on one stock never oversell', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'FLASH', 150)
  const batches = Array.from({ length: 20 }, (_, b) => Array.from({ length: 25 }, (_, i) => `user_${(b * 25 + i) % 400}`))
  const singles = Array.from({ length: 200 }, (_, i) => `user_${i * 2}`)
  const [batchOutcomes, singleOutcomes] = await Promise.all([
    Promise.all(batches.map(async (batch) => claimCoupons(pool, 'FLASH', batch))),
    Promise.all(singles.map(async (user) => claimCoupon(pool, 'FLASH', user)))
  ])
  const claimed = [...batchOutcomes.flat(), ...singleOutcomes].filter((o) => o.status === 'claimed').length
  t.equal(claimed, 150, 'every unit is claimed once')
  const found = await getCoupon(pool, 'FLASH')
  t.match(found, { status: 'found', coupon: { remaining_amount: 0 } })
  if (found.status === 'found') t.equal(new Set(found.coupon.claimed_by).size, 150, '150 distinct users')
})

t.test('50 concurrent claims by one user: exactly one succeeds', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'C', 10)
  const outcomes = await Promise.all(Array.from({ length: 50 }, async () => claimCoupon(pool, 'C', 'greedy')))
  t.equal(outcomes.filter((o) => o.status === 'claimed').length, 1)
  t.equal(outcomes.filter((o) => o.status === 'already-claimed').length, 49)
  t.match(await getCoupon(pool, 'C'), { status: 'found', coupon: { remaining_amount: 9, claimed_by: ['greedy'] } })
})

t.test('one user\'s two claims racing for the last unit: one claimed, the other already-claimed, not sold-out', async (t) => {
  const { pool } = await testSchema(t)
  await createCoupon(pool, 'LAST', 1)
  // Hold the coupon's row lock so that both claims take their snapshot before the lock wait.
  const holder = await pool.connect()
  t.teardown(() => { holder.release() })
  await holder.query('BEGIN')
  await holder.query('SELECT 1 FROM coupons WHERE name = $1 FOR UPDATE', ['LAST'])
  const racing = Promise.all([claimCoupon(pool, 'LAST', 'twice'), claimCoupon(pool, 'LAST', 'twice')])
  await waitForLockWaiters(pool, 2)
  await holder.query('COMMIT')
  const outcomes = (await racing).map((o) => o.status).sort()
  t.same(outcomes, ['already-claimed', 'claimed'])
  t.match(await getCoupon(pool, 'LAST'), { status: 'found', coupon: { remaining_amount: 0, claimed_by: ['twice'] } })
})

/** Waits until `count` sessions wait for a lock (the racing claims are queued behind the holder). */
async function waitForLockWaiters (pool: Pool, count: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await pool.query<{ waiting: number }>("SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database() AND query LIKE '%INSERT INTO claims%'")
    if (rows[0].waiting >= count) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`fewer than ${count} sessions waited for the lock`)
}

t.test('an unreachable PostgreSQL is FLASH_SALE_UNAVAILABLE (retriable, surely not applied)', async (t) => {
  const pool = createPool(`postgres://postgres@127.0.0.1:${await freePort()}/coupons`, 'test', silentLogger)
  t.teardown(() => pool.end())
  const calls: Array<() => Promise<unknown>> = [() => claimCoupon(pool, 'C', 'u1'), () => claimCoupons(pool, 'C', ['u1']), () => createCoupon(pool, 'C', 1), () => getCoupon(pool, 'C'), () => migrate(pool, silentLogger)]
  for (const call of calls) {
    await t.rejects(call(), { code: 'FLASH_SALE_UNAVAILABLE', retriable: true })
  }
})

t.test('a connection lost while a claim is in flight leaves its outcome unknown', async (t) => {
  const { pool, schema } = await testSchema(t)
  await createCoupon(pool, 'C', 1)
  // Hold the coupon's row lock so that the claim waits in the server, then kill its backend.
  const holder = await pool.connect()
  t.teardown(() => holder.release(true))
  await holder.query('BEGIN')
  await holder.query("SELECT 1 FROM coupons WHERE name = 'C' FOR UPDATE")
  const claim = claimCoupon(pool, 'C', 'u1')
  claim.catch(() => {})
  const admin = new Pool({ connectionString: TEST_DATABASE_URL, max: 1 })
  t.teardown(() => admin.end())
  let killed = 0
  for (let i = 0; i < 100 && killed === 0; i++) {
    const { rows } = await admin.query<{ killed: boolean }>(
      'SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = \'Lock\'',
      [schema]
    )
    killed = rows.filter((row) => row.killed).length
    if (killed === 0) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(killed, 1, 'the waiting claim was found and its backend terminated')
  await t.rejects(claim, { code: 'FLASH_SALE_OUTCOME_UNKNOWN', retriable: true })
  await holder.query('ROLLBACK')
  t.same(await claimCoupon(pool, 'C', 'u1'), { status: 'claimed' }, 'the pool recovers')
})

t.test('server errors are mapped by whether a retry can help', async (t) => {
  const transient = Object.assign(new DatabaseError('deadlock detected', 0, 'error'), { code: '40P01' })
  const broken = Object.assign(new DatabaseError('relation "coupons" does not exist', 0, 'error'), { code: '42P01' })
  t.match(storeError(transient, 'x', true), { code: 'FLASH_SALE_UNAVAILABLE', retriable: true })
  t.match(storeError(broken, 'x', true), { code: 'FLASH_SALE_STORE_FAILED', retriable: false })
  t.match(storeError(new Error('Connection terminated unexpectedly'), 'x', true), { code: 'FLASH_SALE_OUTCOME_UNKNOWN' })
  t.match(storeError(new Error('connect ECONNREFUSED'), 'x', false), { code: 'FLASH_SALE_UNAVAILABLE' })
  t.ok(isCouponsError(storeError(new Error('x'), 'x', false)))
})
