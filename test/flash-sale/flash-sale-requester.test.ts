// The api's request/reply client against the real Kafka, with a scripted responder in place of the
// flash-sale consumer: requests are keyed and labelled as the contract says, replies find their
// caller, a missing reply becomes "outcome unknown", a late one is dropped, two processes sharing
// an instance id keep their own replies, and close() leaves nobody waiting.
import { setTimeout as sleep } from 'node:timers/promises'
import type { KafkaMessage } from 'kafkajs'
import t, { type Test } from 'tap'
import { FlashSaleRequester } from '../../src/flash-sale/flash-sale-requester.js'
import { HEADERS, flashSaleTopics, headerText, kindOfTopic } from '../../src/flash-sale/messages.js'
import type { RequestKind } from '../../src/flash-sale/contract.js'
import type { Config } from '../../src/shared/config.js'
import { testConfig, testKafka, deleteTopics, silentLogger, uniqueName } from '../helpers/test-env.js'

interface Seen { kind: RequestKind, key: string, value: unknown, headers: Record<string, string | undefined> }

/** Stands in for the consumer (start it after a requester, which creates the topics): answers each request with what `answer` returns (undefined: no reply), after `delayMs`. */
async function responder (t: Test, config: Config, answer: (request: Seen) => unknown, delayMs = 0): Promise<Seen[]> {
  const kafka = testKafka(config)
  const topics = flashSaleTopics(config)
  const seen: Seen[] = []
  const producer = kafka.producer()
  const consumer = kafka.consumer({ groupId: uniqueName('responder'), maxWaitTimeInMs: 100 })
  t.teardown(async () => {
    await consumer.disconnect()
    await producer.disconnect()
  })
  await producer.connect()
  await consumer.connect()
  await consumer.subscribe({ topics: (['create', 'claim', 'get'] as const).map((kind) => topics.request(kind)), fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ topic, message }: { topic: string, message: KafkaMessage }) => {
      const headers = Object.fromEntries([HEADERS.correlationId, HEADERS.replyTo, HEADERS.deadline].map((name) => [name, headerText(message.headers, name)]))
      const request: Seen = { kind: kindOfTopic(topics, topic) as RequestKind, key: String(message.key), value: JSON.parse(String(message.value)), headers }
      seen.push(request)
      const reply = answer(request)
      if (reply === undefined) return
      const send = async (): Promise<void> => {
        await producer.send({ topic: headers[HEADERS.replyTo] as string, messages: [{ value: JSON.stringify(reply), headers: { [HEADERS.correlationId]: headers[HEADERS.correlationId] as string } }] })
      }
      if (delayMs === 0) await send()
      else setTimeout(() => { send().catch(() => {}) }, delayMs)
    }
  })
  return seen
}

async function setup (t: Test, label: string, env: NodeJS.ProcessEnv = {}): Promise<{ config: Config, start: (instanceEnv?: NodeJS.ProcessEnv) => Promise<FlashSaleRequester> }> {
  const name = uniqueName(label)
  const base = { INSTANCE_ID: name, ...env }
  const config = testConfig(label, base)
  t.teardown(async () => { await deleteTopics(testKafka(config), config.kafkaTopicPrefix) })
  const start = async (instanceEnv: NodeJS.ProcessEnv = {}): Promise<FlashSaleRequester> => {
    const requester = new FlashSaleRequester({ config: { ...config, ...instanceEnv } as Config, logger: silentLogger })
    t.teardown(() => requester.close())
    await requester.start()
    return requester
  }
  return { config, start }
}

t.test('publishes each request keyed by coupon name, with a correlation id and the reply topic, and resolves with the reply', async (t) => {
  const { config, start } = await setup(t, 'req-basic')
  const requester = await start()
  const seen = await responder(t, config, (request) => request.kind === 'claim' ? { status: 'claimed' } : request.kind === 'get' ? { status: 'not-found' } : { status: 'exists' })

  t.same(await requester.claim({ user_id: 'u1', coupon_name: 'PROMO' }), { status: 'claimed' })
  t.same(await requester.get('OTHER'), { status: 'not-found' })
  t.same(await requester.create({ name: 'NEW', amount: 3 }), { status: 'exists' })
  t.same(seen.map(({ kind, key, value }) => ({ kind, key, value })), [
    { kind: 'claim', key: 'PROMO', value: { user_id: 'u1', coupon_name: 'PROMO' } },
    { kind: 'get', key: 'OTHER', value: { name: 'OTHER' } },
    { kind: 'create', key: 'NEW', value: { name: 'NEW', amount: 3 } }
  ])
  for (const { headers } of seen) {
    t.equal(headers[HEADERS.replyTo], flashSaleTopics(config).reply(config.instanceId))
    t.match(headers[HEADERS.correlationId], /^[0-9a-f-]{36}$/)
    t.ok(Number(headers[HEADERS.deadline]) > Date.now() - 60_000)
  }
  t.equal(new Set(seen.map(({ headers }) => headers[HEADERS.correlationId])).size, 3, 'one correlation id per request')
  t.equal(requester.pendingCount, 0)
})

t.test('many concurrent requests each get their own reply', async (t) => {
  const { config, start } = await setup(t, 'req-many')
  const requester = await start()
  await responder(t, config, (request) => (request.value as { user_id: string }).user_id.endsWith('7') ? { status: 'sold-out' } : { status: 'claimed' })
  const users = Array.from({ length: 300 }, (_, i) => `user-${i}`)
  const outcomes = await Promise.all(users.map(async (user) => (await requester.claim({ user_id: user, coupon_name: `C${user.length}` })).status))
  t.same(outcomes, users.map((user) => user.endsWith('7') ? 'sold-out' : 'claimed'))
})

t.test('no reply within the timeout: rejected as outcome unknown, and the late reply is dropped', async (t) => {
  const { config, start } = await setup(t, 'req-timeout', { FLASH_SALE_REPLY_TIMEOUT_MS: '300' })
  const requester = await start()
  await responder(t, config, () => ({ status: 'claimed' }), 1500)
  await t.rejects(requester.claim({ user_id: 'u1', coupon_name: 'SLOW' }), { code: 'FLASH_SALE_OUTCOME_UNKNOWN', message: /no reply to the claim request within 300 ms; it may still be applied/ })
  t.equal(requester.pendingCount, 0, 'the timed-out request is forgotten')
  await sleep(2000)
  t.equal(requester.pendingCount, 0, 'the late reply changed nothing')
  await t.rejects(requester.get('SLOW'), { code: 'FLASH_SALE_OUTCOME_UNKNOWN', message: /no reply to the get request within 300 ms$/ })
})

t.test('a failed reply (dead-lettered request) is rejected as unavailable: nothing was applied', async (t) => {
  const { config, start } = await setup(t, 'req-failed')
  const requester = await start()
  await responder(t, config, () => ({ status: 'failed', error: { code: 'FLASH_SALE_UNAVAILABLE', message: 'PostgreSQL is unavailable' } }))
  await t.rejects(requester.claim({ user_id: 'u1', coupon_name: 'DLQ' }), { code: 'FLASH_SALE_UNAVAILABLE', retriable: true, message: /gave up on the claim request/ })
})

t.test('a failed reply whose attempts may have been applied is rejected as outcome unknown, not unavailable', async (t) => {
  const { config, start } = await setup(t, 'req-failed-unknown')
  const requester = await start()
  await responder(t, config, () => ({ status: 'failed', error: { code: 'FLASH_SALE_OUTCOME_UNKNOWN', message: 'an earlier attempt may have been applied' } }))
  await t.rejects(requester.claim({ user_id: 'u1', coupon_name: 'DLQ' }), { code: 'FLASH_SALE_OUTCOME_UNKNOWN', retriable: true, message: /gave up on the claim request \(FLASH_SALE_OUTCOME_UNKNOWN/ })
})

t.test('two processes sharing an instance id each receive their own replies', async (t) => {
  const { config, start } = await setup(t, 'req-shared', { FLASH_SALE_REPLY_TIMEOUT_MS: '20000' })
  const [a, b] = await Promise.all([start(), start()])
  await responder(t, config, (request) => ({ status: (request.value as { user_id: string }).user_id.startsWith('a') ? 'claimed' : 'already-claimed' }))
  t.equal(a.replyTopic, b.replyTopic, 'one reply topic for both')
  const users = Array.from({ length: 100 }, (_, i) => i)
  const [fromA, fromB] = await Promise.all([
    Promise.all(users.map(async (i) => (await a.claim({ user_id: `a${i}`, coupon_name: `K${i % 7}` })).status)),
    Promise.all(users.map(async (i) => (await b.claim({ user_id: `b${i}`, coupon_name: `K${i % 7}` })).status))
  ])
  t.same(new Set(fromA), new Set(['claimed']))
  t.same(new Set(fromB), new Set(['already-claimed']))
  t.equal(a.pendingCount + b.pendingCount, 0)
})

t.test('close() rejects what is still waiting, is idempotent, and later requests are refused', async (t) => {
  const { config, start } = await setup(t, 'req-close', { FLASH_SALE_REPLY_TIMEOUT_MS: '30000' })
  const requester = await start()
  await responder(t, config, () => undefined)
  const waiting = requester.claim({ user_id: 'u1', coupon_name: 'CLOSE' }).catch((err: unknown) => err)
  await sleep(200)
  await Promise.all([requester.close(), requester.close()])
  t.match(await waiting, { code: 'FLASH_SALE_OUTCOME_UNKNOWN', message: /closed before the reply came/ })
  await t.rejects(requester.get('CLOSE'), { code: 'FLASH_SALE_UNAVAILABLE', message: /not running/ })
  t.equal(config.flashSaleReplyTimeoutMs, 30000)
})
