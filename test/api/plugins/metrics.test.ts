import t from 'tap'
import type { App } from '../../../src/api/app.js'
import { ADMIN_TOKEN, freePort, publishSet, testApp } from '../../helpers/api-env.js'
import { redisKeys } from '../../../src/shared/redis-keys.js'
import { sampleValue } from '../../helpers/metrics-text.js'
import { testSchema } from '../../helpers/postgres-env.js'

const METRICS_TOKEN = 'test-metrics-token-0123456789abcdef'
const scrapeAuth = { authorization: `Bearer ${METRICS_TOKEN}` }

async function scrape (app: App): Promise<string> {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: scrapeAuth })
  if (res.statusCode !== 200) throw new Error(`GET /metrics answered ${res.statusCode}: ${res.body}`)
  return res.body
}

t.test('GET /metrics asks for METRICS_TOKEN: no header, a wrong token and the admin token get 401', async (t) => {
  const { app } = await testApp(t, { METRICS_TOKEN })
  for (const [label, headers] of [
    ['no header', {}],
    ['a wrong token', { authorization: 'Bearer not-the-metrics-token-at-all' }],
    ['the admin token', { authorization: `Bearer ${ADMIN_TOKEN}` }]
  ] as const) {
    const res = await app.inject({ method: 'GET', url: '/metrics', headers })
    t.equal(res.statusCode, 401, label)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="coupons-metrics"')
    t.notMatch(res.body, /coupons_lookups_total/, `${label}: no metric in the answer`)
  }
  const ok = await app.inject({ method: 'GET', url: '/metrics', headers: scrapeAuth })
  t.equal(ok.statusCode, 200)
  t.match(ok.headers['content-type'], /^text\/plain; version=0\.0\.4/, "Prometheus' text format")
})

t.test('without METRICS_TOKEN, /metrics is refused unless METRICS_PUBLIC=true', async (t) => {
  const closed = (await testApp(t)).app
  t.equal((await closed.inject({ method: 'GET', url: '/metrics' })).statusCode, 401, 'closed by default')
  t.equal((await closed.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode, 401, 'the admin token does not open it')
  const open = (await testApp(t, { METRICS_PUBLIC: 'true' })).app
  t.equal((await open.inject({ method: 'GET', url: '/metrics' })).statusCode, 200, 'open with METRICS_PUBLIC=true')
  const both = (await testApp(t, { METRICS_PUBLIC: 'true', METRICS_TOKEN })).app
  t.equal((await both.inject({ method: 'GET', url: '/metrics' })).statusCode, 401, 'a token, when set, is required even with METRICS_PUBLIC')
})

t.test('lookups by outcome and request durations by route and status count exactly the requests made', async (t) => {
  const { app, config, redis } = await testApp(t, { METRICS_TOKEN })
  // Before any set is published: unavailable.
  for (let i = 0; i < 2; i++) t.equal((await app.inject({ url: '/coupons/HAPPYHRS' })).statusCode, 503)
  await publishSet(redis, config.redisPrefix, ['HAPPYHRS', 'BUYGETON1'])
  const requests: Array<[string, number, number]> = [
    ['/coupons/HAPPYHRS', 200, 3],
    ['/coupons/BUYGETON1', 200, 2],
    ['/coupons/SUPER100', 404, 4],
    ['/coupons/short', 400, 5],
    ['/coupons/%27%20OR%201%3D1', 400, 1]
  ]
  for (const [url, status, times] of requests) {
    for (let i = 0; i < times; i++) t.equal((await app.inject({ url })).statusCode, status, url)
  }
  for (let i = 0; i < 3; i++) await app.inject({ url: '/admin/status' }) // 401: no token

  const text = await scrape(app)
  t.equal(sampleValue(text, 'coupons_lookups_total', { outcome: 'valid' }), 5)
  t.equal(sampleValue(text, 'coupons_lookups_total', { outcome: 'invalid' }), 4)
  t.equal(sampleValue(text, 'coupons_lookups_total', { outcome: 'malformed' }), 6)
  t.equal(sampleValue(text, 'coupons_lookups_total', { outcome: 'unavailable' }), 2)

  const count = (route: string, status: number, method = 'GET'): number | undefined =>
    sampleValue(text, 'http_request_duration_seconds_count', { method, route, status_code: String(status) })
  t.equal(count('/coupons/:code', 200), 5, 'by route pattern, not by path')
  t.equal(count('/coupons/:code', 404), 4)
  t.equal(count('/coupons/:code', 400), 6)
  t.equal(count('/coupons/:code', 503), 2)
  t.equal(count('/admin/status', 401), 3)
  t.equal(sampleValue(text, 'http_request_duration_seconds_bucket', { route: '/coupons/:code', status_code: '200', le: '+Inf' }), 5)
  const sum = sampleValue(text, 'http_request_duration_seconds_sum', { route: '/coupons/:code', status_code: '200' }) ?? -1
  t.ok(sum > 0 && sum < 5, `the durations are seconds (${sum} for 5 lookups)`)
  t.equal(count('/metrics', 200), undefined, 'the scrape itself is counted once it is answered, not before')
  t.equal(sampleValue(await scrape(app), 'http_request_duration_seconds_count', { route: '/metrics', status_code: '200' }), 1, 'the first scrape, seen by the second')
})

t.test("the live set's gauges and the queue depths are read from Redis at each scrape", async (t) => {
  const { app, config, redis } = await testApp(t, { METRICS_TOKEN })
  let text = await scrape(app)
  t.equal(sampleValue(text, 'coupons_valid_set_codes'), undefined, 'no set published: no value rather than a made-up 0')
  t.equal(sampleValue(text, 'coupons_ingest_queue_jobs', { state: 'waiting' }), 0)

  await publishSet(redis, config.redisPrefix, ['HAPPYHRS', 'BUYGETON1', 'OVER900012'])
  const lastSwapAt = '2026-01-02T03:04:05.678Z'
  await redis.hset(redisKeys(config.redisPrefix).meta, { lastSwapAt, swapMs: '1234' })
  text = await scrape(app)
  const set = { set: redisKeys(config.redisPrefix).valid }
  t.equal(sampleValue(text, 'coupons_valid_set_codes', set), 3)
  t.equal(sampleValue(text, 'coupons_valid_set_last_swap_timestamp_seconds', set), Date.parse(lastSwapAt) / 1000)
  t.equal(sampleValue(text, 'coupons_valid_set_swap_seconds', set), 1.234)
})

t.test('a scrape while Redis is down still answers, without the gauges it cannot read', async (t) => {
  const port = await freePort()
  const { app } = await testApp(t, { METRICS_TOKEN, REDIS_URL: `redis://127.0.0.1:${port}` }, { redisConnectWaitMs: 100, dependencyTimeoutMs: 300 })
  const text = await scrape(app)
  t.equal(sampleValue(text, 'coupons_valid_set_codes'), undefined)
  t.equal(sampleValue(text, 'coupons_ingest_queue_jobs', { state: 'waiting' }), undefined)
  t.equal(sampleValue(text, 'coupons_lookups_total', { outcome: 'valid' }), 0)
})

t.test('flash-sale requests are counted by kind and outcome (direct mode)', async (t) => {
  const { databaseUrl } = await testSchema(t, { migrated: false })
  const { app } = await testApp(t, { METRICS_TOKEN, EVENT_DRIVEN_ENABLED: 'false', DATABASE_URL: databaseUrl })
  const post = async (url: string, payload: object): Promise<number> => (await app.inject({ method: 'POST', url, payload })).statusCode
  t.equal(await post('/api/coupons', { name: 'PROMO_SUPER', amount: 2 }), 201)
  t.equal(await post('/api/coupons', { name: 'PROMO_SUPER', amount: 2 }), 409)
  t.equal(await post('/api/coupons/claim', { user_id: 'u1', coupon_name: 'PROMO_SUPER' }), 200)
  t.equal(await post('/api/coupons/claim', { user_id: 'u2', coupon_name: 'PROMO_SUPER' }), 200)
  t.equal(await post('/api/coupons/claim', { user_id: 'u1', coupon_name: 'PROMO_SUPER' }), 409)
  t.equal(await post('/api/coupons/claim', { user_id: 'u3', coupon_name: 'PROMO_SUPER' }), 409)
  t.equal(await post('/api/coupons/claim', { user_id: 'u3', coupon_name: 'NOPE' }), 404)
  t.equal((await app.inject({ url: '/api/coupons/PROMO_SUPER' })).statusCode, 200)
  t.equal(await post('/api/coupons', { name: 'x', amount: 'many' }), 400, 'a bad body is not a flash-sale request')

  const text = await scrape(app)
  const value = (kind: string, outcome: string): number | undefined => sampleValue(text, 'coupons_flash_sale_requests_total', { kind, outcome })
  t.equal(value('create', 'created'), 1)
  t.equal(value('create', 'exists'), 1)
  t.equal(value('claim', 'claimed'), 2)
  t.equal(value('claim', 'already-claimed'), 1)
  t.equal(value('claim', 'sold-out'), 1)
  t.equal(value('claim', 'not-found'), 1)
  t.equal(value('get', 'found'), 1)
  t.equal(sampleValue(text, 'http_request_duration_seconds_count', { method: 'POST', route: '/api/coupons', status_code: '400' }), 1)
})
