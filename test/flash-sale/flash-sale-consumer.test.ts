// The flash-sale consumer against the real Kafka and PostgreSQL (a schema of its own per test):
// it applies each kind of request and replies, groups a burst of claims, makes a redelivery
// harmless, dead-letters what it cannot read at once, and retries transient failures a bounded
// number of times before dead-lettering them and telling the caller.
import { randomUUID } from 'node:crypto'
import type { Registry } from 'prom-client'
import t, { type Test } from 'tap'
import { FlashSaleConsumer } from '../../src/flash-sale/flash-sale-consumer.js'
import { FlashSaleRequester } from '../../src/flash-sale/flash-sale-requester.js'
import { HEADERS, flashSaleTopics, headerText } from '../../src/flash-sale/messages.js'
import type { Config } from '../../src/shared/config.js'
import { claimCoupons } from '../../src/flash-sale/store.js'
import { isCouponsError } from '../../src/shared/errors.js'
import { CuttableProxy, flashSaleEnv, readTopic, throughProxy, waitFor } from '../helpers/event-driven-env.js'
import { createRegistry } from '../../src/shared/metrics.js'
import { sampleValue } from '../helpers/metrics-text.js'
import { silentLogger } from '../helpers/test-env.js'

async function startConsumer (t: Test, config: Config, metricsRegistry?: Registry): Promise<FlashSaleConsumer> {
  const consumer = new FlashSaleConsumer({ config, logger: silentLogger, metricsRegistry })
  t.teardown(() => consumer.close())
  await consumer.start()
  return consumer
}

async function startRequester (t: Test, config: Config): Promise<FlashSaleRequester> {
  const requester = new FlashSaleRequester({ config, logger: silentLogger })
  t.teardown(() => requester.close())
  await requester.start()
  return requester
}

async function counts (pool: import('pg').Pool, name: string): Promise<{ remaining: number | null, claims: number, users: number }> {
  const coupon = await pool.query<{ remaining_amount: number }>('SELECT remaining_amount FROM coupons WHERE name = $1', [name])
  const claims = await pool.query<{ claims: string, users: string }>('SELECT count(*) AS claims, count(DISTINCT user_id) AS users FROM claims WHERE coupon_name = $1', [name])
  return { remaining: coupon.rows[0]?.remaining_amount ?? null, claims: Number(claims.rows[0].claims), users: Number(claims.rows[0].users) }
}

t.test('applies creates, claims and reads, replies to each, and counts them by outcome', async (t) => {
  const { config } = await flashSaleEnv(t, 'fsc-basic')
  const registry = createRegistry('flash-sale', { processMetrics: false })
  await startConsumer(t, config, registry)
  const requester = await startRequester(t, config)

  const created = await requester.create({ name: 'PROMO', amount: 2 })
  t.same(created, { status: 'created', coupon: { name: 'PROMO', amount: 2, remaining_amount: 2, claimed_by: [] } })
  t.same(await requester.create({ name: 'PROMO', amount: 5 }), { status: 'exists' })
  t.same(await requester.claim({ user_id: 'u1', coupon_name: 'PROMO' }), { status: 'claimed' })
  t.same(await requester.claim({ user_id: 'u1', coupon_name: 'PROMO' }), { status: 'already-claimed' })
  t.same(await requester.claim({ user_id: 'u2', coupon_name: 'PROMO' }), { status: 'claimed' })
  t.same(await requester.claim({ user_id: 'u3', coupon_name: 'PROMO' }), { status: 'sold-out' })
  t.same(await requester.claim({ user_id: 'u1', coupon_name: 'NOPE' }), { status: 'not-found' })
  t.same(await requester.get('PROMO'), { status: 'found', coupon: { name: 'PROMO', amount: 2, remaining_amount: 0, claimed_by: ['u1', 'u2'] } })
  t.same(await requester.get('NOPE'), { status: 'not-found' })

  const text = await registry.metrics()
  const handled = (kind: string, outcome: string): number | undefined => sampleValue(text, 'coupons_flash_sale_consumer_requests_total', { kind, outcome })
  t.same([handled('create', 'created'), handled('create', 'exists')], [1, 1])
  t.same([handled('claim', 'claimed'), handled('claim', 'already-claimed'), handled('claim', 'sold-out'), handled('claim', 'not-found')], [2, 1, 1, 1])
  t.same([handled('get', 'found'), handled('get', 'not-found')], [1, 1])
})

t.test('a burst of claims on one coupon: stock never oversold, nobody twice', async (t) => {
  const { config, pool } = await flashSaleEnv(t, 'fsc-burst')
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'BURST', amount: 100 })

  const users = Array.from({ length: 500 }, (_, i) => `user-${i}`)
  // Every user twice, interleaved: one of the two is refused as already claimed (or sold out).
  const outcomes = await Promise.all([...users, ...users].map(async (user) => (await requester.claim({ user_id: user, coupon_name: 'BURST' })).status))
  t.equal(outcomes.filter((status) => status === 'claimed').length, 100)
  t.equal(outcomes.filter((status) => status === 'sold-out' || status === 'already-claimed').length, 900)
  t.same(await counts(pool, 'BURST'), { remaining: 0, claims: 100, users: 100 })
})

t.test('a redelivered request is harmless: the second copy answers already-claimed', async (t) => {
  const { config, kafka, pool } = await flashSaleEnv(t, 'fsc-redeliver')
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'TWICE', amount: 10 })

  const topics = flashSaleTopics(config)
  const producer = kafka.producer()
  await producer.connect()
  t.teardown(() => producer.disconnect())
  const copy = {
    key: 'TWICE',
    value: JSON.stringify({ user_id: 'u1', coupon_name: 'TWICE' }),
    headers: { [HEADERS.correlationId]: randomUUID(), [HEADERS.replyTo]: requester.replyTopic }
  }
  await producer.send({ topic: topics.request('claim'), messages: [copy, copy] })
  const replies = await readTopic(kafka, requester.replyTopic, 3)
  const claimReplies = replies.filter((reply) => headerText(reply.headers, HEADERS.correlationId) === copy.headers[HEADERS.correlationId])
  t.same(claimReplies.map((reply) => JSON.parse(String(reply.value)).status), ['claimed', 'already-claimed'])
  t.same(await counts(pool, 'TWICE'), { remaining: 9, claims: 1, users: 1 })
})

t.test('an unreadable request goes to the dead-letter topic at once, and its caller is told', async (t) => {
  const { config, kafka } = await flashSaleEnv(t, 'fsc-bad')
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  const topics = flashSaleTopics(config)
  const producer = kafka.producer()
  await producer.connect()
  t.teardown(() => producer.disconnect())
  const correlationId = randomUUID()
  await producer.send({
    topic: topics.request('claim'),
    messages: [
      { key: 'X', value: '{not json', headers: { [HEADERS.correlationId]: correlationId, [HEADERS.replyTo]: requester.replyTopic } },
      { key: 'X', value: JSON.stringify({ user_id: 'u1', coupon_name: 'X' }), headers: { [HEADERS.replyTo]: 'elsewhere' } }
    ]
  })
  const dead = await readTopic(kafka, topics.dlq('claim'), 2)
  t.same(dead.map((message) => headerText(message.headers, HEADERS.errorCode)), ['FLASH_SALE_BAD_MESSAGE', 'FLASH_SALE_BAD_MESSAGE'])
  t.same(dead.map((message) => headerText(message.headers, HEADERS.attempt)), ['1', '1'], 'no retry for a message a retry cannot fix')
  t.equal(headerText(dead[0].headers, HEADERS.originalTopic), topics.request('claim'))
  t.equal(String(dead[0].value), '{not json', 'the value is kept as it was')
  const replies = await readTopic(kafka, requester.replyTopic, 1)
  t.equal(JSON.parse(String(replies[0].value)).status, 'failed')
  t.equal(headerText(replies[0].headers, HEADERS.correlationId), correlationId)
})

t.test('PostgreSQL unreachable: retried, then dead-lettered with the error; the caller gets a failure and nothing is applied', async (t) => {
  const proxy = new CuttableProxy()
  await proxy.start()
  t.teardown(() => proxy.cut())
  const stack = await flashSaleEnv(t, 'fsc-outage', { FLASH_SALE_MAX_ATTEMPTS: '3', FLASH_SALE_RETRY_DELAY_MS: '50', FLASH_SALE_REPLY_TIMEOUT_MS: '30000' })
  const { kafka, pool } = stack
  const config = stack.configWith({ DATABASE_URL: throughProxy(stack.databaseUrl, proxy.hostPort) })
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'DOWN', amount: 5 })

  await proxy.cut()
  const claim = requester.claim({ user_id: 'u1', coupon_name: 'DOWN' })
  await t.rejects(claim, { code: 'FLASH_SALE_UNAVAILABLE', message: /gave up on the claim request \(FLASH_SALE_UNAVAILABLE/ })
  const err = await claim.catch((err: unknown) => err)
  t.ok(isCouponsError(err) && err.retriable)

  const topics = flashSaleTopics(config)
  const retried = await readTopic(kafka, topics.retry('claim'), 2)
  t.same(retried.map((message) => headerText(message.headers, HEADERS.attempt)), ['2', '3'])
  const [dead] = await readTopic(kafka, topics.dlq('claim'), 1)
  t.equal(headerText(dead.headers, HEADERS.attempt), '3', 'given up after FLASH_SALE_MAX_ATTEMPTS attempts')
  t.equal(headerText(dead.headers, HEADERS.errorCode), 'FLASH_SALE_UNAVAILABLE')
  t.equal(headerText(dead.headers, HEADERS.originalTopic), topics.retry('claim'))
  t.same(JSON.parse(String(dead.value)), { user_id: 'u1', coupon_name: 'DOWN' })
  t.same(await counts(pool, 'DOWN'), { remaining: 5, claims: 0, users: 0 }, 'nothing half-applied')
})

t.test('a request whose earlier attempt had an unknown outcome is dead-lettered as outcome unknown, not as "nothing applied"', async (t) => {
  const proxy = new CuttableProxy()
  await proxy.start()
  t.teardown(() => proxy.cut())
  const stack = await flashSaleEnv(t, 'fsc-unknown', { FLASH_SALE_MAX_ATTEMPTS: '2', FLASH_SALE_RETRY_DELAY_MS: '50', FLASH_SALE_REPLY_TIMEOUT_MS: '30000' })
  const { kafka, pool } = stack
  const config = stack.configWith({ DATABASE_URL: throughProxy(stack.databaseUrl, proxy.hostPort) })
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'MAYBE', amount: 5 })
  await proxy.cut()

  // The request as the consumer retries it after a first attempt lost its COMMIT's answer: its
  // second and last attempt fails (PostgreSQL is cut off), so it is dead-lettered.
  const topics = flashSaleTopics(config)
  const correlationId = randomUUID()
  const producer = kafka.producer()
  await producer.connect()
  t.teardown(() => producer.disconnect())
  await producer.send({
    topic: topics.retry('claim'),
    messages: [{
      key: 'MAYBE',
      value: JSON.stringify({ user_id: 'u1', coupon_name: 'MAYBE' }),
      headers: {
        [HEADERS.correlationId]: correlationId,
        [HEADERS.replyTo]: topics.reply(config.instanceId),
        [HEADERS.attempt]: '2',
        [HEADERS.notBefore]: String(Date.now()),
        [HEADERS.outcomeUnknown]: '1',
        [HEADERS.errorCode]: 'FLASH_SALE_OUTCOME_UNKNOWN',
        [HEADERS.errorMessage]: 'the connection was lost after COMMIT was sent'
      }
    }]
  })
  const [dead] = await readTopic(kafka, topics.dlq('claim'), 1)
  t.equal(headerText(dead.headers, HEADERS.correlationId), correlationId)
  t.equal(headerText(dead.headers, HEADERS.outcomeUnknown), '1', 'the dead letter says an attempt may have been applied')
  t.equal(headerText(dead.headers, HEADERS.errorCode), 'FLASH_SALE_UNAVAILABLE', 'the last error')
  // The reply topic holds the create's reply and this one.
  const [reply] = (await readTopic(kafka, topics.reply(config.instanceId), 2)).filter((message) => headerText(message.headers, HEADERS.correlationId) === correlationId)
  t.match(JSON.parse(String(reply.value)), { status: 'failed', error: { code: 'FLASH_SALE_OUTCOME_UNKNOWN', message: /earlier attempt may have been applied.*FLASH_SALE_UNAVAILABLE/ } })
  t.same(await counts(pool, 'MAYBE'), { remaining: 5, claims: 0, users: 0 })
})

t.test('a request retried while PostgreSQL comes back is applied once', async (t) => {
  const proxy = new CuttableProxy()
  await proxy.start()
  t.teardown(() => proxy.cut())
  const stack = await flashSaleEnv(t, 'fsc-recover', { FLASH_SALE_MAX_ATTEMPTS: '20', FLASH_SALE_RETRY_DELAY_MS: '200', FLASH_SALE_REPLY_TIMEOUT_MS: '60000' })
  const config = stack.configWith({ DATABASE_URL: throughProxy(stack.databaseUrl, proxy.hostPort) })
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'BACK', amount: 5 })

  await proxy.cut()
  const claim = requester.claim({ user_id: 'u1', coupon_name: 'BACK' })
  await readTopic(stack.kafka, flashSaleTopics(config).retry('claim'), 1)
  await proxy.start()
  t.same(await claim, { status: 'claimed' })
  await waitFor('the claim row', async () => (await counts(stack.pool, 'BACK')).claims === 1)
  t.same(await counts(stack.pool, 'BACK'), { remaining: 4, claims: 1, users: 1 })
})

t.test('a retry waits out a delay longer than the session timeout without losing its group membership', async (t) => {
  const proxy = new CuttableProxy()
  await proxy.start()
  t.teardown(() => proxy.cut())
  // 12 s before the second attempt: longer than the 10 s session timeout, so only the heartbeats
  // sent while waiting keep the member in its group.
  const stack = await flashSaleEnv(t, 'fsc-longwait', { FLASH_SALE_MAX_ATTEMPTS: '2', FLASH_SALE_RETRY_DELAY_MS: '12000', FLASH_SALE_REPLY_TIMEOUT_MS: '60000' })
  const config = stack.configWith({ DATABASE_URL: throughProxy(stack.databaseUrl, proxy.hostPort) })
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'WAIT', amount: 5 })

  await proxy.cut()
  const claim = requester.claim({ user_id: 'u1', coupon_name: 'WAIT' })
  await readTopic(stack.kafka, flashSaleTopics(config).retry('claim'), 1)
  await proxy.start()
  const admin = stack.kafka.admin()
  await admin.connect()
  t.teardown(() => admin.disconnect())
  const generations = new Set<string>()
  const watching = setInterval(() => {
    admin.describeGroups([flashSaleTopics(config).retryGroup]).then(({ groups: [group] }) => {
      generations.add(`${group.state}:${group.members.map((member) => member.memberId).join()}`)
    }, () => {})
  }, 500)
  t.teardown(() => clearInterval(watching))
  t.same(await claim, { status: 'claimed' }, 'applied by the second attempt')
  clearInterval(watching)
  t.equal(generations.size, 1, `one stable member all along (${[...generations].join(' | ')})`)
  t.same(await counts(stack.pool, 'WAIT'), { remaining: 4, claims: 1, users: 1 })
})

t.test('a read whose reply would be too large for Kafka is answered with a failure, and the partition goes on', async (t) => {
  const { config, pool } = await flashSaleEnv(t, 'fsc-large')
  await startConsumer(t, config)
  const requester = await startRequester(t, config)
  await requester.create({ name: 'HUGE', amount: 100_000 })
  // 60,000 claimants of ~20 characters: over a megabyte of claimed_by.
  for (let i = 0; i < 60_000; i += 10_000) {
    await claimCoupons(pool, 'HUGE', Array.from({ length: 10_000 }, (_, j) => `user-with-a-long-id-${i + j}`))
  }
  await t.rejects(requester.get('HUGE'), { code: 'FLASH_SALE_UNAVAILABLE', message: /FLASH_SALE_REPLY_TOO_LARGE/ })
  // A stuck partition would leave this one without a reply (a timeout, OUTCOME_UNKNOWN).
  await t.rejects(requester.get('HUGE'), { code: 'FLASH_SALE_UNAVAILABLE', message: /FLASH_SALE_REPLY_TOO_LARGE/ }, 'the same partition is still served')
  t.same(await requester.claim({ user_id: 'one-more', coupon_name: 'HUGE' }), { status: 'claimed' })
})
