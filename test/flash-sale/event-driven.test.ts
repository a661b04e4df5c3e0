// Event-driven flash sales end to end: the real routes (app.inject) publish to Kafka, the real
// flash-sale consumer (in this process, or `coupons flash-sale` child processes) applies the
// requests to PostgreSQL (a schema of its own per test) and replies. The HTTP contract, the races,
// a consumer SIGKILLed mid-burst, and PostgreSQL or the consumer missing.
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { App } from '../../src/api/app.js'
import { FlashSaleConsumer } from '../../src/flash-sale/flash-sale-consumer.js'
import { HEADERS, flashSaleTopics, headerText } from '../../src/flash-sale/messages.js'
import { testApp } from '../helpers/api-env.js'
import { CuttableProxy, flashSaleEnv, readTopic, spawnRole, throughProxy, waitFor, type FlashSaleEnv } from '../helpers/event-driven-env.js'
import { silentLogger } from '../helpers/test-env.js'

/** An api on the stack's topics and schema, in event-driven mode, as instance `instanceId`. */
async function eventDrivenApp (t: Test, stack: FlashSaleEnv, instanceId: string, env: NodeJS.ProcessEnv = {}): Promise<App> {
  const { config } = stack
  const { app } = await testApp(t, {
    EVENT_DRIVEN_ENABLED: 'true',
    KAFKA_TOPIC_PREFIX: config.kafkaTopicPrefix,
    KAFKA_PARTITIONS: String(config.kafkaPartitions),
    DATABASE_URL: config.databaseUrl,
    INSTANCE_ID: `${config.instanceId}-${instanceId}`,
    FLASH_SALE_REPLY_TIMEOUT_MS: String(config.flashSaleReplyTimeoutMs),
    RATE_LIMIT_MAX: '0',
    ...env
  })
  return app
}

async function inProcessConsumer (t: Test, stack: FlashSaleEnv, config = stack.config): Promise<FlashSaleConsumer> {
  const consumer = new FlashSaleConsumer({ config, logger: silentLogger })
  t.teardown(() => consumer.close())
  await consumer.start()
  return consumer
}

const create = async (app: App, name: string, amount: number) => app.inject({ method: 'POST', url: '/api/coupons', payload: { name, amount } })
const claim = async (app: App, user: string, coupon: string) => app.inject({ method: 'POST', url: '/api/coupons/claim', payload: { user_id: user, coupon_name: coupon } })
const get = async (app: App, name: string) => app.inject({ method: 'GET', url: `/api/coupons/${name}` })

/** status, or status and code for errors: "200", "409 SOLD_OUT", "503 OUTCOME_UNKNOWN"… */
async function outcome (response: Promise<{ statusCode: number, json: () => { code?: string } }>): Promise<string> {
  const res = await response
  return res.statusCode < 400 ? String(res.statusCode) : `${res.statusCode} ${res.json().code ?? ''}`.trim()
}

function tally (outcomes: string[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1
  return counts
}

async function rows (stack: FlashSaleEnv, name: string): Promise<{ remaining: number | null, claims: number, users: number }> {
  const coupon = await stack.pool.query<{ remaining_amount: number }>('SELECT remaining_amount FROM coupons WHERE name = $1', [name])
  const claims = await stack.pool.query<{ claims: string, users: string }>('SELECT count(*) AS claims, count(DISTINCT user_id) AS users FROM claims WHERE coupon_name = $1', [name])
  return { remaining: coupon.rows[0]?.remaining_amount ?? null, claims: Number(claims.rows[0].claims), users: Number(claims.rows[0].users) }
}

/** Waits until `count` members share the flash-sale consumer group and it is stable (no request waits for a rebalance). */
async function groupStable (stack: FlashSaleEnv, count: number): Promise<void> {
  const admin = stack.kafka.admin()
  await admin.connect()
  try {
    await waitFor(`${count} stable members in the flash-sale group`, async () => {
      const { groups: [group] } = await admin.describeGroups([flashSaleTopics(stack.config).consumerGroup])
      return group.state === 'Stable' && group.members.length === count
    }, 60_000, 200)
  } finally {
    await admin.disconnect()
  }
}

t.test('the HTTP contract, every case, through the consumer', async (t) => {
  const stack = await flashSaleEnv(t, 'ed-contract')
  await inProcessConsumer(t, stack)
  const app = await eventDrivenApp(t, stack, 'api')

  const created = await create(app, 'PROMO_SUPER', 2)
  t.equal(created.statusCode, 201)
  t.same(created.json(), { name: 'PROMO_SUPER', amount: 2, remaining_amount: 2, claimed_by: [] })
  const exists = await create(app, 'PROMO_SUPER', 7)
  t.equal(exists.statusCode, 409)
  t.match(exists.json(), { code: 'COUPON_EXISTS' })

  const claimed = await claim(app, 'user_1', 'PROMO_SUPER')
  t.equal(claimed.statusCode, 200)
  t.same(claimed.json(), { user_id: 'user_1', coupon_name: 'PROMO_SUPER' })
  t.equal(await outcome(claim(app, 'user_1', 'PROMO_SUPER')), '409 ALREADY_CLAIMED')
  t.equal(await outcome(claim(app, 'user_2', 'PROMO_SUPER')), '200')
  t.equal(await outcome(claim(app, 'user_3', 'PROMO_SUPER')), '409 SOLD_OUT')
  t.equal(await outcome(claim(app, 'user_1', 'NOPE')), '404 COUPON_NOT_FOUND')

  const found = await get(app, 'PROMO_SUPER')
  t.equal(found.statusCode, 200)
  t.same(found.json(), { name: 'PROMO_SUPER', amount: 2, remaining_amount: 0, claimed_by: ['user_1', 'user_2'] })
  t.equal(await outcome(get(app, 'NOPE')), '404 COUPON_NOT_FOUND')

  // Malformed requests are refused by the route: nothing reaches Kafka.
  t.equal((await app.inject({ method: 'POST', url: '/api/coupons', payload: { name: 'X', amount: 0 } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/api/coupons/claim', payload: { user_id: 'u 1', coupon_name: 'PROMO_SUPER' } })).statusCode, 400)
  t.equal((await get(app, 'bad name!')).statusCode, 400)
  t.same(await rows(stack, 'PROMO_SUPER'), { remaining: 0, claims: 2, users: 2 })
})

t.test('1,000 concurrent claims by distinct users on a stock of 100: exactly 100 succeed', async (t) => {
  const stack = await flashSaleEnv(t, 'ed-race', { FLASH_SALE_REPLY_TIMEOUT_MS: '60000' })
  await inProcessConsumer(t, stack)
  const app = await eventDrivenApp(t, stack, 'api')
  t.equal((await create(app, 'RACE', 100)).statusCode, 201)

  const outcomes = await Promise.all(Array.from({ length: 1000 }, async (_, i) => outcome(claim(app, `user_${i}`, 'RACE'))))
  t.same(tally(outcomes), { 200: 100, '409 SOLD_OUT': 900 })
  const coupon = (await get(app, 'RACE')).json()
  t.equal(coupon.remaining_amount, 0)
  t.equal(new Set(coupon.claimed_by).size, 100, '100 distinct users in claimed_by')
  t.same(await rows(stack, 'RACE'), { remaining: 0, claims: 100, users: 100 })
})

t.test('50 concurrent claims by one user: exactly one succeeds', async (t) => {
  const stack = await flashSaleEnv(t, 'ed-same', { FLASH_SALE_REPLY_TIMEOUT_MS: '60000' })
  await inProcessConsumer(t, stack)
  const app = await eventDrivenApp(t, stack, 'api')
  t.equal((await create(app, 'ONCE', 10)).statusCode, 201)
  const outcomes = await Promise.all(Array.from({ length: 50 }, async () => outcome(claim(app, 'user_1', 'ONCE'))))
  t.same(tally(outcomes), { 200: 1, '409 ALREADY_CLAIMED': 49 })
  t.same(await rows(stack, 'ONCE'), { remaining: 9, claims: 1, users: 1 })
})

t.test('two api instances and two consumer processes: the same guarantees', async (t) => {
  const stack = await flashSaleEnv(t, 'ed-two', { FLASH_SALE_REPLY_TIMEOUT_MS: '60000' })
  const consumers = [spawnRole(t, 'flash-sale', stack.env), spawnRole(t, 'flash-sale', stack.env)]
  await Promise.all(consumers.map(async (consumer) => consumer.waitForLog('flash-sale consumer started')))
  await groupStable(stack, 2)
  const apps = [await eventDrivenApp(t, stack, 'api-1'), await eventDrivenApp(t, stack, 'api-2')]
  t.equal((await create(apps[0], 'RACE', 100)).statusCode, 201)
  t.equal((await create(apps[1], 'ONCE', 10)).statusCode, 201)

  const [race, once] = await Promise.all([
    Promise.all(Array.from({ length: 1000 }, async (_, i) => outcome(claim(apps[i % 2], `user_${i}`, 'RACE')))),
    Promise.all(Array.from({ length: 50 }, async (_, i) => outcome(claim(apps[i % 2], 'user_1', 'ONCE'))))
  ])
  t.same(tally(race), { 200: 100, '409 SOLD_OUT': 900 })
  t.same(tally(once), { 200: 1, '409 ALREADY_CLAIMED': 49 })
  t.same(await rows(stack, 'RACE'), { remaining: 0, claims: 100, users: 100 })
  t.same(await rows(stack, 'ONCE'), { remaining: 9, claims: 1, users: 1 })
  const coupon = (await get(apps[1], 'RACE')).json()
  t.equal(new Set(coupon.claimed_by).size, 100)
  for (const consumer of consumers) t.equal(await consumer.stop(), 0, 'SIGTERM stops a consumer cleanly')
})

t.test('the consumer SIGKILLed in the middle of a burst and restarted: no claim lost, none doubled', async (t) => {
  const stack = await flashSaleEnv(t, 'ed-kill', { FLASH_SALE_REPLY_TIMEOUT_MS: '3000' })
  const first = spawnRole(t, 'flash-sale', stack.env)
  await first.waitForLog('flash-sale consumer started')
  const app = await eventDrivenApp(t, stack, 'api')
  t.equal((await create(app, 'KILL', 5000)).statusCode, 201)

  // 2,000 distinct users, 50 at a time every 20 ms: the burst goes on while the consumer is dead.
  const users = Array.from({ length: 2000 }, (_, i) => `user_${i}`)
  const sending = (async () => {
    const pending: Array<Promise<string>> = []
    for (let i = 0; i < users.length; i += 50) {
      for (const user of users.slice(i, i + 50)) pending.push(outcome(claim(app, user, 'KILL')))
      await sleep(20)
    }
    return await Promise.all(pending)
  })()
  await waitFor('the first claims applied', async () => (await rows(stack, 'KILL')).claims > 0, 60_000, 10)
  await first.kill()
  const atKill = await rows(stack, 'KILL')
  t.ok(atKill.claims < users.length, `killed mid-burst (${atKill.claims} of ${users.length} applied)`)

  const second = spawnRole(t, 'flash-sale', stack.env)
  await second.waitForLog('flash-sale consumer started')
  const outcomes = await sending
  await waitFor('every claim applied', async () => (await rows(stack, 'KILL')).claims === users.length, 120_000, 200)
  await sleep(1000) // a redelivery still in flight would show up now
  t.same(await rows(stack, 'KILL'), { remaining: 5000 - users.length, claims: users.length, users: users.length })
  // Which callers heard back in time depends on when the kill lands; none may hear anything else.
  const counts = tally(outcomes)
  t.same(Object.keys(counts).filter((o) => o !== '200' && o !== '503 OUTCOME_UNKNOWN'), [], 'each caller got 200 or "outcome unknown"')
  t.equal(await outcome(claim(app, 'user_after', 'KILL')), '200', 'the restarted consumer answers a new claim')
  t.same(await rows(stack, 'KILL'), { remaining: 5000 - users.length - 1, claims: users.length + 1, users: users.length + 1 })
  t.equal(await second.stop(), 0)
})

t.test('no consumer running: 503 OUTCOME_UNKNOWN, and the claim is applied once a consumer starts', async (t) => {
  const stack = await flashSaleEnv(t, 'ed-noconsumer', { FLASH_SALE_REPLY_TIMEOUT_MS: '15000' })
  const consumer = await inProcessConsumer(t, stack)
  const app = await eventDrivenApp(t, stack, 'api', { FLASH_SALE_REPLY_TIMEOUT_MS: '500' })
  t.equal((await create(app, 'LATER', 3)).statusCode, 201)
  await consumer.close()

  const res = await claim(app, 'user_1', 'LATER')
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '2')
  t.match(res.json(), { code: 'OUTCOME_UNKNOWN', message: /may/ })
  t.equal(await outcome(get(app, 'LATER')), '503 UNAVAILABLE', 'a read that timed out applied nothing')

  await inProcessConsumer(t, stack)
  await waitFor('the claim applied', async () => (await rows(stack, 'LATER')).claims === 1)
  t.same(await rows(stack, 'LATER'), { remaining: 2, claims: 1, users: 1 })
})

t.test('PostgreSQL unreachable: retried, dead-lettered, the api answers 503 UNAVAILABLE, nothing half-applied', async (t) => {
  const proxy = new CuttableProxy()
  await proxy.start()
  t.teardown(() => proxy.cut())
  const stack = await flashSaleEnv(t, 'ed-pgdown', { FLASH_SALE_MAX_ATTEMPTS: '3', FLASH_SALE_RETRY_DELAY_MS: '100', FLASH_SALE_REPLY_TIMEOUT_MS: '30000' })
  await inProcessConsumer(t, stack, stack.configWith({ DATABASE_URL: throughProxy(stack.databaseUrl, proxy.hostPort) }))
  const app = await eventDrivenApp(t, stack, 'api')
  t.equal((await create(app, 'DOWN', 5)).statusCode, 201)

  await proxy.cut()
  const outcomes = await Promise.all([claim(app, 'user_1', 'DOWN'), claim(app, 'user_2', 'DOWN'), create(app, 'DOWN2', 5)])
  for (const res of outcomes) {
    t.equal(res.statusCode, 503)
    t.same(res.json(), { statusCode: 503, error: 'Service Unavailable', code: 'UNAVAILABLE', message: 'the flash sale cannot answer right now; nothing was applied' })
  }
  const topics = flashSaleTopics(stack.config)
  const deadClaims = await readTopic(stack.kafka, topics.dlq('claim'), 2)
  t.same(deadClaims.map((m) => JSON.parse(String(m.value)).user_id).sort(), ['user_1', 'user_2'])
  for (const message of deadClaims) {
    t.equal(headerText(message.headers, HEADERS.attempt), '3')
    t.equal(headerText(message.headers, HEADERS.errorCode), 'FLASH_SALE_UNAVAILABLE')
  }
  const [deadCreate] = await readTopic(stack.kafka, topics.dlq('create'), 1)
  t.same(JSON.parse(String(deadCreate.value)), { name: 'DOWN2', amount: 5 })

  await proxy.start()
  t.same(await rows(stack, 'DOWN'), { remaining: 5, claims: 0, users: 0 }, 'nothing half-applied')
  t.same(await rows(stack, 'DOWN2'), { remaining: null, claims: 0, users: 0 })
  t.equal(await outcome(claim(app, 'user_1', 'DOWN')), '200', 'served again once PostgreSQL is back')
})
