import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { App } from '../../src/api/app.js'
import { freePort, publishSet, testApp, ThrowawayRedis } from '../helpers/api-env.js'

async function statusOf (app: App, code: string): Promise<number> {
  return (await app.inject({ method: 'GET', url: `/coupons/${code}` })).statusCode
}

/** Polls until the route answers `want`; every other answer seen on the way must be in `allowed`. */
async function waitFor (t: Test, app: App, code: string, want: number, allowed: number[]): Promise<void> {
  const seen = new Set<number>()
  for (let i = 0; i < 150; i++) {
    const status = await statusOf(app, code)
    if (status === want) {
      t.pass(`${code} answers ${want} (on the way: ${[...seen].join(', ') || 'nothing else'})`)
      return
    }
    seen.add(status)
    if (!allowed.includes(status)) break
    await sleep(100)
  }
  t.fail(`${code} never answered ${want}; saw ${[...seen].join(', ')}`)
}

t.test('Redis stopped gives 503, not 404, and the API recovers by itself when Redis is back', async (t) => {
  const server = new ThrowawayRedis(await freePort())
  await server.start()
  t.teardown(() => server.stop())
  const { app, config, redis } = await testApp(t, { REDIS_URL: server.url }, { healthCheckIntervalMs: 100 })
  await publishSet(redis, config.redisPrefix, ['HAPPYHRS'])
  t.equal(await statusOf(app, 'HAPPYHRS'), 200)
  t.equal(await statusOf(app, 'NOTVALID1'), 404)

  await server.stop()
  for (let i = 0; i < 10; i++) {
    t.equal(await statusOf(app, 'HAPPYHRS'), 503, 'a valid code during the outage')
    t.equal(await statusOf(app, 'NOTVALID1'), 503, 'an invalid code during the outage')
    await sleep(50)
  }
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 503, 'health says so too')

  // The restarted Redis has lost its data (no persistence): the answer is "unknown", never "invalid".
  await server.start()
  let health = 0
  for (let i = 0; i < 100 && health !== 200; i++) {
    await sleep(100)
    health = (await app.inject({ method: 'GET', url: '/health' })).statusCode
  }
  t.equal(health, 200, 'the app reconnects by itself')
  t.equal(await statusOf(app, 'NOTVALID1'), 503, 'a wiped Redis is not a published empty set')
  t.equal(await statusOf(app, 'HAPPYHRS'), 503)

  await publishSet(redis, config.redisPrefix, ['HAPPYHRS'])
  await waitFor(t, app, 'HAPPYHRS', 200, [503])
  t.equal(await statusOf(app, 'NOTVALID1'), 404)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
})
