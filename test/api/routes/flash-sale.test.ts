import type { Pool } from 'pg'
import t from 'tap'
import { RETRY_AFTER_OVERLOAD_SECONDS } from '../../../src/api/http-errors.js'
import { RETRY_AFTER_SECONDS } from '../../../src/api/routes/flash-sale.js'
import type { App } from '../../../src/api/app.js'
import { freePort, overloadEventLoop, testApp } from '../../helpers/api-env.js'
import { TEST_DATABASE_URL, testSchema } from '../../helpers/postgres-env.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** An app in direct mode on a fresh schema (migrated by the app itself, as at start-up), and a pool on that schema. */
async function directApp (t: Teardown): Promise<{ app: App, pool: Pool, schema: string }> {
  const { pool, databaseUrl, schema } = await testSchema(t, { migrated: false })
  const { app } = await testApp(t, { EVENT_DRIVEN_ENABLED: 'false', DATABASE_URL: databaseUrl })
  return { app, pool, schema }
}

const create = async (app: App, payload: unknown) => app.inject({ method: 'POST', url: '/api/coupons', payload: payload as object })
const claim = async (app: App, payload: unknown) => app.inject({ method: 'POST', url: '/api/coupons/claim', payload: payload as object })
const get = async (app: App, name: string) => app.inject({ method: 'GET', url: `/api/coupons/${encodeURIComponent(name)}` })

t.test('the app migrates its schema at start-up in direct mode', async (t) => {
  const { pool } = await directApp(t)
  const { rows } = await pool.query<{ name: string }>('SELECT name FROM pgmigrations')
  t.same(rows.map((row) => row.name), ['0001_coupons-and-claims'])
})

t.test('POST /api/coupons creates a coupon (201) once; the same name again is 409', async (t) => {
  const { app, pool } = await directApp(t)
  const created = await create(app, { name: 'PROMO_SUPER', amount: 100 })
  t.equal(created.statusCode, 201)
  t.same(created.json(), { name: 'PROMO_SUPER', amount: 100, remaining_amount: 100, claimed_by: [] })
  const again = await create(app, { name: 'PROMO_SUPER', amount: 5 })
  t.equal(again.statusCode, 409)
  t.same(again.json(), { statusCode: 409, error: 'Conflict', code: 'COUPON_EXISTS', message: 'a coupon named "PROMO_SUPER" exists' })
  const { rows } = await pool.query('SELECT name, amount, remaining_amount FROM coupons')
  t.same(rows, [{ name: 'PROMO_SUPER', amount: 100, remaining_amount: 100 }], 'stored in the app\'s schema, unchanged by the refused create')
})

t.test('POST /api/coupons/claim: 200, then 409 ALREADY_CLAIMED, 409 SOLD_OUT, 404 for no such coupon', async (t) => {
  const { app } = await directApp(t)
  t.equal((await create(app, { name: 'PROMO_SUPER', amount: 1 })).statusCode, 201)

  const claimed = await claim(app, { user_id: 'user_12345', coupon_name: 'PROMO_SUPER' })
  t.equal(claimed.statusCode, 200)
  t.same(claimed.json(), { user_id: 'user_12345', coupon_name: 'PROMO_SUPER' })

  const again = await claim(app, { user_id: 'user_12345', coupon_name: 'PROMO_SUPER' })
  t.equal(again.statusCode, 409)
  t.match(again.json(), { statusCode: 409, error: 'Conflict', code: 'ALREADY_CLAIMED', message: /already claimed/ })

  const late = await claim(app, { user_id: 'user_2', coupon_name: 'PROMO_SUPER' })
  t.equal(late.statusCode, 409)
  t.match(late.json(), { statusCode: 409, code: 'SOLD_OUT', message: /sold out/ })

  const missing = await claim(app, { user_id: 'user_2', coupon_name: 'NOPE' })
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { statusCode: 404, error: 'Not Found', code: 'COUPON_NOT_FOUND' })
})

t.test('GET /api/coupons/:name shows the stock and the claimants in order; 404 for no such coupon', async (t) => {
  const { app } = await directApp(t)
  await create(app, { name: 'PROMO_SUPER', amount: 3 })
  for (const user of ['user_b', 'user_a']) t.equal((await claim(app, { user_id: user, coupon_name: 'PROMO_SUPER' })).statusCode, 200)
  const found = await get(app, 'PROMO_SUPER')
  t.equal(found.statusCode, 200)
  t.same(found.json(), { name: 'PROMO_SUPER', amount: 3, remaining_amount: 1, claimed_by: ['user_b', 'user_a'] })
  const missing = await get(app, 'promo_super')
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { code: 'COUPON_NOT_FOUND' })
  t.equal((await get(app, 'bad name!')).statusCode, 400, 'a malformed name is 400')
  t.equal((await get(app, 'x'.repeat(65))).statusCode, 400, 'a name longer than 64 is 400')
})

const BAD_CREATES: Array<[string, unknown]> = [
  ['an empty object', {}],
  ['no amount', { name: 'PROMO' }],
  ['no name', { amount: 10 }],
  ['an amount of 0', { name: 'PROMO', amount: 0 }],
  ['a negative amount', { name: 'PROMO', amount: -5 }],
  ['a fractional amount', { name: 'PROMO', amount: 1.5 }],
  ['an amount above 1,000,000', { name: 'PROMO', amount: 1_000_001 }],
  ['an amount as a string', { name: 'PROMO', amount: '100' }],
  ['a numeric name', { name: 123, amount: 10 }],
  ['an empty name', { name: '', amount: 10 }],
  ['a name with a space', { name: 'PROMO SUPER', amount: 10 }],
  ['a name of 65 characters', { name: 'A'.repeat(65), amount: 10 }],
  ['an extra field', { name: 'PROMO', amount: 10, remaining_amount: 5 }],
  ['an array', [{ name: 'PROMO', amount: 10 }]],
  ['null', null]
]

const BAD_CLAIMS: Array<[string, unknown]> = [
  ['an empty object', {}],
  ['no user_id', { coupon_name: 'PROMO' }],
  ['no coupon_name', { user_id: 'user_1' }],
  ['camelCase fields', { userId: 'user_1', couponName: 'PROMO' }],
  ['a numeric user_id', { user_id: 12345, coupon_name: 'PROMO' }],
  ['an empty user_id', { user_id: '', coupon_name: 'PROMO' }],
  ['a user_id with a space', { user_id: 'user 1', coupon_name: 'PROMO' }],
  ['a user_id of 129 characters', { user_id: 'u'.repeat(129), coupon_name: 'PROMO' }],
  ['a malformed coupon_name', { user_id: 'user_1', coupon_name: 'PROMO;DROP' }],
  ['an extra field', { user_id: 'user_1', coupon_name: 'PROMO', amount: 1 }]
]

t.test('every invalid body is a 400 that explains itself, and nothing is stored', async (t) => {
  const { app, pool } = await directApp(t)
  for (const [label, payload] of BAD_CREATES) {
    const res = await app.inject({ method: 'POST', url: '/api/coupons', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
    t.equal(res.statusCode, 400, `create: ${label}`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message: String }, `create: ${label} has an error body`)
  }
  await create(app, { name: 'PROMO', amount: 10 })
  for (const [label, payload] of BAD_CLAIMS) {
    const res = await app.inject({ method: 'POST', url: '/api/coupons/claim', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
    t.equal(res.statusCode, 400, `claim: ${label}`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message: String }, `claim: ${label} has an error body`)
  }
  const broken = await app.inject({ method: 'POST', url: '/api/coupons', headers: { 'content-type': 'application/json' }, payload: '{"name": "PROMO",' })
  t.equal(broken.statusCode, 400, 'broken JSON')
  const { rows } = await pool.query('SELECT name, remaining_amount FROM coupons')
  t.same(rows, [{ name: 'PROMO', remaining_amount: 10 }], 'only the valid coupon, untouched')
  t.equal((await pool.query('SELECT 1 FROM claims')).rowCount, 0)
})

t.test('with PostgreSQL unreachable every flash-sale route answers 503 UNAVAILABLE with Retry-After, quickly and without internals', async (t) => {
  const port = await freePort()
  const url = new URL(TEST_DATABASE_URL)
  url.port = String(port)
  const { app } = await testApp(t, { EVENT_DRIVEN_ENABLED: 'false', DATABASE_URL: url.toString() })
  const started = Date.now()
  for (const res of [
    await create(app, { name: 'PROMO', amount: 10 }),
    await claim(app, { user_id: 'user_1', coupon_name: 'PROMO' }),
    await get(app, 'PROMO')
  ]) {
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], String(RETRY_AFTER_SECONDS))
    t.same(res.json(), { statusCode: 503, error: 'Service Unavailable', code: 'UNAVAILABLE', message: 'the flash sale cannot answer right now; nothing was applied' })
    t.notMatch(res.body, /ECONNREFUSED|127\.0\.0\.1|postgres|SQLSTATE|stack/i, 'no internals')
  }
  t.ok(Date.now() - started < 5000, 'answers without waiting for a timeout')
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'the rest of the api is unaffected')
})

t.test('a Redis outage does not take the flash sale down: its routes answer while /health and lookups are 503', async (t) => {
  const { databaseUrl } = await testSchema(t, { migrated: false })
  const redisPort = await freePort()
  const { app } = await testApp(t, { EVENT_DRIVEN_ENABLED: 'false', DATABASE_URL: databaseUrl, REDIS_URL: `redis://127.0.0.1:${redisPort}` }, { redisConnectWaitMs: 100 })
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 503, 'the health check sees Redis down')
  t.equal((await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode, 503, 'lookups need Redis')
  t.equal((await create(app, { name: 'NO_REDIS', amount: 2 })).statusCode, 201)
  t.equal((await claim(app, { user_id: 'user_1', coupon_name: 'NO_REDIS' })).statusCode, 200)
  t.same((await get(app, 'NO_REDIS')).json(), { name: 'NO_REDIS', amount: 2, remaining_amount: 1, claimed_by: ['user_1'] })
})

t.test('an overloaded event loop sheds the flash-sale routes too, with Retry-After', async (t) => {
  const { databaseUrl } = await testSchema(t, { migrated: false })
  const { app } = await testApp(t, { EVENT_DRIVEN_ENABLED: 'false', DATABASE_URL: databaseUrl }, { maxEventLoopDelayMs: 5 })
  t.equal((await create(app, { name: 'BUSY', amount: 1 })).statusCode, 201)
  await overloadEventLoop(app, 5)
  const shed = await get(app, 'BUSY')
  t.equal(shed.statusCode, 503)
  t.equal(shed.headers['retry-after'], String(RETRY_AFTER_OVERLOAD_SECONDS))
  t.same(shed.json(), { statusCode: 503, error: 'Service Unavailable', message: 'the server is overloaded; try again shortly' })
})

t.test('a claim whose connection is lost in flight answers 503 OUTCOME_UNKNOWN, telling how to check', async (t) => {
  const { app, pool, schema } = await directApp(t)
  await create(app, { name: 'PROMO', amount: 5 })
  // Hold the coupon's row lock so the claim waits in the server, then end its backend.
  const holder = await pool.connect()
  t.teardown(() => holder.release(true))
  await holder.query('BEGIN')
  await holder.query("SELECT 1 FROM coupons WHERE name = 'PROMO' FOR UPDATE")
  const pending = claim(app, { user_id: 'user_12345', coupon_name: 'PROMO' })
  let killed = false
  for (let i = 0; i < 200 && !killed; i++) {
    const { rows } = await pool.query<{ killed: boolean }>(
      "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO claims%'",
      [schema]
    )
    killed = rows.some((row) => row.killed)
    if (!killed) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(killed, 'the waiting claim\'s backend was terminated')
  const res = await pending
  await holder.query('ROLLBACK')
  t.equal(res.statusCode, 503)
  t.ok(Number(res.headers['retry-after']) > 0, 'has Retry-After')
  t.match(res.json(), { statusCode: 503, code: 'OUTCOME_UNKNOWN', message: /GET \/api\/coupons\/PROMO.*"user_12345" in claimed_by/ })
  t.notMatch(res.body, /terminat|SQLSTATE|administrator/i, 'no internals')
  t.equal((await claim(app, { user_id: 'user_12345', coupon_name: 'PROMO' })).statusCode, 200, 'claiming again is safe and works once PostgreSQL answers')
})

t.test('the routes are the same in both modes: an injected FlashSale decides the outcomes', async (t) => {
  const seen: string[] = []
  const { app } = await testApp(t, {}, {
    flashSale: {
      create: async (body) => { seen.push(`create ${body.name}`); return { status: 'exists' } },
      claim: async (body) => { seen.push(`claim ${body.user_id}`); return { status: 'sold-out' } },
      get: async (name) => { seen.push(`get ${name}`); return { status: 'found', coupon: { name, amount: 2, remaining_amount: 0, claimed_by: ['a', 'b'] } } }
    }
  })
  t.equal((await create(app, { name: 'P', amount: 1 })).statusCode, 409)
  t.match((await claim(app, { user_id: 'u', coupon_name: 'P' })).json(), { code: 'SOLD_OUT' })
  t.same((await get(app, 'P')).json(), { name: 'P', amount: 2, remaining_amount: 0, claimed_by: ['a', 'b'] })
  t.same(seen, ['create P', 'claim u', 'get P'])
})
