import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../../src/api/app.js'
import { HttpError } from '../../src/api/http-errors.js'
import { freePort, overloadEventLoop, publishSet, testApp, ThrowawayRedis } from '../helpers/api-env.js'
import { testConfig } from '../helpers/test-env.js'

t.test('GET /health is 200 while Redis answers', async (t) => {
  const { app } = await testApp(t)
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
})

t.test('with Redis at a closed port, health and lookups answer 503, never 404', async (t) => {
  const port = await freePort()
  const { app } = await testApp(t, { REDIS_URL: `redis://127.0.0.1:${port}` }, { redisConnectWaitMs: 100, dependencyTimeoutMs: 500 })
  const health = await app.inject({ method: 'GET', url: '/health' })
  t.equal(health.statusCode, 503)
  t.equal(health.headers['retry-after'], '5', 'health has Retry-After')
  for (const code of ['HAPPYHRS', 'NOTVALID1']) {
    const res = await app.inject({ method: 'GET', url: `/coupons/${code}` })
    t.equal(res.statusCode, 503, code)
    t.equal(res.headers['retry-after'], '5', 'has Retry-After')
    t.equal(res.json().error, 'Service Unavailable')
  }
})

t.test('a lookup answers 503 by itself when Redis fails between health checks, and logs the outage once', async (t) => {
  const server = new ThrowawayRedis(await freePort())
  await server.start()
  t.teardown(() => server.stop())
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } }))
  // The health check passes once and is not run again, so only the route stands between the outage and a 404.
  const { app, config, redis } = await testApp(t, { REDIS_URL: server.url }, { healthCheckIntervalMs: 60_000, logger })
  await publishSet(redis, config.redisPrefix, ['HAPPYHRS'])
  t.equal((await app.inject({ method: 'GET', url: '/coupons/NOTVALID1' })).statusCode, 404)
  await server.stop()
  t.notOk(app.isUnderPressure(), 'the load shedder does not know yet')
  for (const code of ['HAPPYHRS', 'NOTVALID1', 'FIFTYOFF']) {
    const res = await app.inject({ method: 'GET', url: `/coupons/${code}` })
    t.equal(res.statusCode, 503, code)
    t.equal(res.headers['retry-after'], '5', 'Retry-After: a Redis outage is usually short')
    t.same(res.json(), { statusCode: 503, error: 'Service Unavailable', message: 'the valid set cannot be read right now' })
  }
  const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.level >= 40)
  t.same(logged.map((entry) => entry.msg), ['redis lookup failed; answering 503 (logged once per 10 s)'], 'one warning for three failed lookups')
})

t.test('an overloaded event loop is shed with a quick 503', async (t) => {
  const { app, config, redis } = await testApp(t, {}, { maxEventLoopDelayMs: 5 })
  await publishSet(redis, config.redisPrefix, ['HAPPYHRS'])
  await overloadEventLoop(app, 5)
  const res = await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })
  // The set is published and Redis answers: only the load shedder can say 503 here.
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '5', 'has Retry-After')
  // And it comes back by itself once the loop is idle again.
  let status = 0
  for (let i = 0; i < 50 && status !== 200; i++) {
    await sleep(100)
    status = (await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode
  }
  t.equal(status, 200, 'recovers')
})

t.test('unexpected errors are logged with the error and answered without internals', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } }))
  const { app } = await testApp(t, {}, { logger })
  await app.close()
  // A fresh app, so a route can be added before it is ready.
  const { buildApp } = await import('../../src/api/app.js')
  const { testConfig } = await import('../helpers/test-env.js')
  const broken = buildApp({ config: testConfig('api'), logger })
  broken.get('/boom', async () => { throw new Error('secret: connection string redis://user:pw@host') })
  t.teardown(() => broken.close())
  const res = await broken.inject({ method: 'GET', url: '/boom' })
  t.equal(res.statusCode, 500)
  t.same(res.json(), { statusCode: 500, error: 'Internal Server Error', message: 'Internal Server Error' })
  const logged = lines.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'request failed')
  t.ok(logged, 'logged')
  t.equal(logged.level, 50, 'at error level')
  t.match(logged.err.message, /secret/, 'with the error object')
})

t.test('a thrown HttpError is answered by the error handler alone: body, code and Retry-After', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'info' }, new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } }))
  const app = buildApp({ config: testConfig('api'), logger })
  t.teardown(() => app.close())
  app.get('/conflict', async () => { throw new HttpError(409, 'sold out', { code: 'SOLD_OUT' }) })
  app.get('/later', async () => { throw new HttpError(503, 'try again soon', { retryAfter: 7, cause: new Error('internal detail') }) })
  app.get('/quiet', async () => { throw new HttpError(503, 'expected for now', { retryAfter: 60, log: false }) })

  const conflict = await app.inject({ method: 'GET', url: '/conflict' })
  t.equal(conflict.statusCode, 409)
  t.same(conflict.json(), { statusCode: 409, error: 'Conflict', code: 'SOLD_OUT', message: 'sold out' })
  t.equal(conflict.headers['retry-after'], undefined, 'no Retry-After unless the error has one')

  const later = await app.inject({ method: 'GET', url: '/later' })
  t.equal(later.statusCode, 503)
  t.equal(later.headers['retry-after'], '7')
  t.same(later.json(), { statusCode: 503, error: 'Service Unavailable', message: 'try again soon' }, 'the message, never the cause')

  const quiet = await app.inject({ method: 'GET', url: '/quiet' })
  t.equal(quiet.statusCode, 503)
  t.equal(quiet.headers['retry-after'], '60')

  const logged = lines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request failed')
  t.same(logged.map((entry) => [entry.level, entry.err.message]), [[40, 'try again soon: internal detail']], 'the 503 is logged at warn with its cause; the 409 and the log: false 503 are not')
})

t.test('unknown routes are 404 with a JSON body', async (t) => {
  const { app } = await testApp(t)
  const res = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(res.statusCode, 404)
  t.equal(res.json().statusCode, 404)
})

t.test('the docs page and its JSON spec are served', async (t) => {
  const { app } = await testApp(t)
  const page = await app.inject({ method: 'GET', url: '/docs' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /html/)
  t.match(page.body, /swagger/i)
  const spec = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(spec.statusCode, 200)
  const doc = spec.json()
  t.equal(doc.openapi, '3.0.3')
  for (const path of ['/coupons/{code}', '/admin/ingest', '/admin/runs', '/admin/runs/{runId}', '/admin/status', '/health']) {
    t.ok(doc.paths[path], `documents ${path}`)
  }
  const coupon = doc.paths['/coupons/{code}'].get
  t.same(Object.keys(coupon.responses).sort(), ['200', '400', '404', '429', '500', '503'])
  t.same(coupon.tags, ['coupons'])
  t.ok(coupon.summary)
})
