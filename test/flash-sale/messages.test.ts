import t from 'tap'
import { ClaimCouponBody } from '../../src/flash-sale/contract.js'
import { HEADERS, ReplyValues, couponNameOf, decodeValue, encodeValue, flashSaleTopics, headerText, kindOfTopic } from '../../src/flash-sale/messages.js'
import { isCouponsError } from '../../src/shared/errors.js'

t.test('topic and group names follow DESIGN section 11, under KAFKA_TOPIC_PREFIX', async (t) => {
  const bare = flashSaleTopics({ kafkaTopicPrefix: '' })
  t.same(['create', 'claim', 'get'].map((kind) => bare.request(kind as 'create')), ['coupon.create.req', 'coupon.claim.req', 'coupon.get.req'])
  t.equal(bare.retry('claim'), 'coupon.claim.retry')
  t.equal(bare.dlq('claim'), 'coupon.claim.dlq')
  t.equal(bare.reply('api-1'), 'coupon.reply.api-1')
  t.equal(bare.consumerGroup, 'coupons-flash-sale')
  const prefixed = flashSaleTopics({ kafkaTopicPrefix: 'test-x.' })
  t.equal(prefixed.request('claim'), 'test-x.coupon.claim.req')
  t.ok(prefixed.reply('api-1').startsWith(prefixed.replyPrefix))
  t.equal(kindOfTopic(prefixed, 'test-x.coupon.get.retry'), 'get')
  t.equal(kindOfTopic(prefixed, 'test-x.coupon.reply.api-1'), null)
  t.equal(kindOfTopic(prefixed, 'coupon.claim.req'), null, 'another prefix\'s topic is not ours')
})

t.test('a request is keyed by its coupon name, whatever its kind', async (t) => {
  t.equal(couponNameOf('claim', { user_id: 'u1', coupon_name: 'PROMO' }), 'PROMO')
  t.equal(couponNameOf('create', { name: 'PROMO', amount: 3 }), 'PROMO')
  t.equal(couponNameOf('get', { name: 'PROMO' }), 'PROMO')
})

t.test('values round-trip, and anything else is FLASH_SALE_BAD_MESSAGE naming what it was', async (t) => {
  const body = { user_id: 'u1', coupon_name: 'PROMO' }
  t.same(decodeValue(ClaimCouponBody, encodeValue(body), 'a claim request'), body)
  t.same(decodeValue(ReplyValues.claim, encodeValue({ status: 'sold-out' }), 'a claim reply'), { status: 'sold-out' })
  for (const [value, message] of [
    [Buffer.from('{not json'), /^a claim request is not JSON$/],
    [null, /^a claim request has an unexpected shape: null$/],
    [encodeValue({ user_id: 'u 1', coupon_name: 'PROMO' }), /unexpected shape/],
    [encodeValue({ ...body, extra: true }), /unexpected shape/]
  ] as const) {
    const err = (() => { try { decodeValue(ClaimCouponBody, value, 'a claim request') } catch (err) { return err } })()
    t.ok(isCouponsError(err, 'FLASH_SALE_BAD_MESSAGE'), String(value))
    t.match((err as Error).message, message)
  }
})

t.test('headers read as text from KafkaJS\'s Buffers, strings or arrays', async (t) => {
  t.equal(headerText({ [HEADERS.correlationId]: Buffer.from('abc') }, HEADERS.correlationId), 'abc')
  t.equal(headerText({ [HEADERS.attempt]: '2' }, HEADERS.attempt), '2')
  t.equal(headerText({ [HEADERS.replyTo]: [Buffer.from('first'), Buffer.from('second')] }, HEADERS.replyTo), 'first')
  t.equal(headerText({}, HEADERS.deadline), undefined)
  t.equal(headerText(undefined, HEADERS.deadline), undefined)
})
