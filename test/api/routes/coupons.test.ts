import t from 'tap'
import { commandCounter, publishSet, testApp } from '../../helpers/api-env.js'

const VALID = ['HAPPYHRS', 'BUYGETON1', 'OVER900012']

t.test('a code in the published set is valid', async (t) => {
  const { app, config, redis } = await testApp(t)
  await publishSet(redis, config.redisPrefix, VALID)
  for (const code of VALID) {
    const res = await app.inject({ method: 'GET', url: `/coupons/${code}` })
    t.equal(res.statusCode, 200, code)
    t.same(res.json(), { code, valid: true })
  }
})

t.test('a well-formed code outside the set is invalid (404), and codes are case-sensitive', async (t) => {
  const { app, config, redis } = await testApp(t)
  await publishSet(redis, config.redisPrefix, VALID)
  for (const code of ['SUPER100', 'happyhrs', 'ABCDEFGHIJ']) {
    const res = await app.inject({ method: 'GET', url: `/coupons/${code}` })
    t.equal(res.statusCode, 404, code)
    t.same(res.json(), { code, valid: false })
  }
})

t.test('surrounding whitespace is trimmed before the lookup', async (t) => {
  const { app, config, redis } = await testApp(t)
  await publishSet(redis, config.redisPrefix, VALID)
  const res = await app.inject({ method: 'GET', url: '/coupons/%20HAPPYHRS%09' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { code: 'HAPPYHRS', valid: true })
})

t.test('an empty published set answers 404, not 503: the set was published, it is just empty', async (t) => {
  const { app, config, redis } = await testApp(t)
  await publishSet(redis, config.redisPrefix, [])
  const res = await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })
  t.equal(res.statusCode, 404)
})

t.test('before any set is published the answer is 503 with Retry-After, never 404', async (t) => {
  const { app } = await testApp(t)
  const res = await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '60', 'Retry-After: the first ingest takes minutes')
  t.same(res.json(), { statusCode: 503, error: 'Service Unavailable', message: 'no valid set has been published yet' })
})

t.test('a malformed code gets a 400 that says what a code is', async (t) => {
  const { app } = await testApp(t)
  const res = await app.inject({ method: 'GET', url: '/coupons/ABCDEFG' })
  t.equal(res.statusCode, 400)
  t.same(res.json(), { statusCode: 400, error: 'Bad Request', message: 'a code is 8 to 10 ASCII letters or digits' })
})

const BAD_INPUTS: Array<[string, string]> = [
  ['empty', '/coupons/'],
  ['only spaces', '/coupons/%20%20%20'],
  ['7 characters', '/coupons/ABCDEFG'],
  ['11 characters', '/coupons/ABCDEFGHIJK'],
  ['non-ASCII letters', `/coupons/${encodeURIComponent('HAPPYHRSÉ')}`],
  ['non-ASCII of valid length', `/coupons/${encodeURIComponent('ÀBCDEFGH')}`],
  ['a NUL byte', '/coupons/HAPPY%00HRS'],
  ['a NUL byte at the end', '/coupons/HAPPYHRS%00'],
  ['path traversal', '/coupons/..%2F..%2Fetc%2Fpasswd'],
  ['a dot segment', '/coupons/..%2F'],
  ['SQL-ish', `/coupons/${encodeURIComponent("' OR 1=1 --")}`],
  ['SQL-ish of valid length', `/coupons/${encodeURIComponent("AB'OR'1=1")}`],
  ['a Redis glob', '/coupons/HAPPYHR*'],
  ['an inner space', '/coupons/HAPPY%20HRS'],
  ['a 10 KB path', `/coupons/${'A'.repeat(10 * 1024)}`],
  ['a broken percent escape', '/coupons/HAPPYHRS%E0%A4%A']
]

t.test('bad inputs get 400 and cause zero Redis commands', async (t) => {
  const { app, config, redis } = await testApp(t, {}, { healthCheckIntervalMs: 60_000 })
  await publishSet(redis, config.redisPrefix, VALID)
  const counter = await commandCounter(config.redisUrl, app.redis)
  t.teardown(counter.stop)

  // The counter is real: one valid lookup is seen as exactly one SISMEMBER.
  t.equal((await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode, 200)
  await counter.settle()
  t.same(counter.commands.map((args) => args[0].toLowerCase()), ['sismember'], 'a lookup is one SISMEMBER')
  counter.commands.length = 0

  for (const [label, url] of BAD_INPUTS) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 400, label)
    t.equal(res.json().statusCode, 400, `${label}: JSON error body`)
    t.notMatch(res.body, 'A'.repeat(100), `${label}: the input is not echoed back`)
  }
  await counter.settle()
  t.same(counter.commands, [], 'no Redis command for any bad input')
})

t.test('non-members cost one command once the set is known to be published', async (t) => {
  const { app, config, redis } = await testApp(t, {}, { healthCheckIntervalMs: 60_000 })
  await publishSet(redis, config.redisPrefix, VALID)
  t.equal((await app.inject({ method: 'GET', url: '/coupons/NOTVALID1' })).statusCode, 404)
  const counter = await commandCounter(config.redisUrl, app.redis)
  t.teardown(counter.stop)
  for (let i = 0; i < 5; i++) {
    t.equal((await app.inject({ method: 'GET', url: `/coupons/NOTVALID${i}` })).statusCode, 404)
  }
  await counter.settle()
  t.equal(counter.commands.length, 5)
  t.ok(counter.commands.every((args) => args[0].toLowerCase() === 'sismember'), 'only SISMEMBER')
})

t.test('the per-client rate limit answers 429 with Retry-After', async (t) => {
  const { app, config, redis } = await testApp(t, { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' })
  await publishSet(redis, config.redisPrefix, VALID)
  const statuses = []
  for (let i = 0; i < 4; i++) statuses.push((await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode)
  t.same(statuses, [200, 200, 200, 429])
  const limited = await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })
  t.equal(limited.statusCode, 429)
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After is what is left of the 60 s window (${retryAfter})`)
  t.equal(limited.json().statusCode, 429)
  const other = await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS', remoteAddress: '10.1.2.3' })
  t.equal(other.statusCode, 200, 'another client is not limited')
})

t.test('RATE_LIMIT_MAX=0 disables the rate limit', async (t) => {
  const { app, config, redis } = await testApp(t, { RATE_LIMIT_MAX: '0' })
  await publishSet(redis, config.redisPrefix, VALID)
  for (let i = 0; i < 20; i++) {
    const res = await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-ratelimit-limit'], undefined)
  }
})

t.test('behind a trusted proxy the rate limit is per client, from X-Forwarded-For', async (t) => {
  const { app, config, redis } = await testApp(t, { RATE_LIMIT_MAX: '2', TRUST_PROXY: '127.0.0.1' })
  await publishSet(redis, config.redisPrefix, VALID)
  const fromProxy = (client: string) => app.inject({ method: 'GET', url: '/coupons/HAPPYHRS', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': client } })
  const first = []
  for (let i = 0; i < 3; i++) first.push((await fromProxy('203.0.113.7')).statusCode)
  t.same(first, [200, 200, 429], 'one client behind the proxy is limited')
  t.equal((await fromProxy('198.51.100.9')).statusCode, 200, 'another client behind the same proxy is not')
})
