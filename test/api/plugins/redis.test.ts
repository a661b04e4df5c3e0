import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { freePort, publishSet, testApp, ThrowawayRedis } from '../../helpers/api-env.js'

t.test('concurrent lookups that share a round trip to Redis each get their own answer', async (t) => {
  const { app, config, redis } = await testApp(t)
  t.ok(app.redis.options.enableAutoPipelining, 'the query connection batches the commands of one event-loop turn')
  const valid = Array.from({ length: 100 }, (_, i) => `VALID${String(i).padStart(4, '0')}`)
  await publishSet(redis, config.redisPrefix, valid)
  const codes = valid.flatMap((code, i) => [code, `NOPE${String(i).padStart(5, '0')}`])
  const answers = await Promise.all(codes.map(async (code) => app.inject({ method: 'GET', url: `/coupons/${code}` })))
  t.same(answers.map((res) => res.statusCode), codes.map((code) => code.startsWith('VALID') ? 200 : 404))
  t.same(answers.map((res) => res.json().code), codes, 'each answer names its own code')
})

t.test('a stalled Redis answers 503 within two command timeouts, also for lookups queued behind a stalled batch', async (t) => {
  const server = new ThrowawayRedis(await freePort())
  await server.start()
  t.teardown(() => server.stop())
  const { app, config, redis } = await testApp(t, { REDIS_URL: server.url }, { healthCheckIntervalMs: 60_000 })
  await publishSet(redis, config.redisPrefix, ['HAPPYHRS'])
  t.equal((await app.inject({ method: 'GET', url: '/coupons/HAPPYHRS' })).statusCode, 200)

  // Only this test's throwaway server stalls; its command timeout is 1 s.
  await redis.call('CLIENT', 'PAUSE', '4000', 'ALL')
  const timed = async (code: string) => {
    const started = Date.now()
    const res = await app.inject({ method: 'GET', url: `/coupons/${code}` })
    return { status: res.statusCode, ms: Date.now() - started }
  }
  const first = timed('HAPPYHRS')
  await sleep(500) // sent while the first lookup's batch is still waiting for Redis
  const queued = await timed('NOTVALID1')
  const answered = await first
  t.equal(answered.status, 503)
  t.equal(queued.status, 503)
  t.ok(answered.ms < 1500, `the stalled lookup answers after its 1 s timeout (${answered.ms} ms)`)
  t.ok(queued.ms < 2500, `the queued one within two timeouts (${queued.ms} ms)`)
})
