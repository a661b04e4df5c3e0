import t from 'tap'
import { bearerCheck } from '../../src/shared/bearer-token.js'

const TOKEN = 'a-metrics-token-0123456789'

t.test('the configured token, sent as Bearer, is the only header that passes', async (t) => {
  const check = bearerCheck(TOKEN)
  t.equal(check(`Bearer ${TOKEN}`), true)
  t.equal(check(`bearer ${TOKEN}`), true, 'the scheme is case-insensitive (RFC 7235)')
  t.equal(check(`Bearer  ${TOKEN} `), true, 'spaces around the token are tolerated')
  t.equal(check(`Bearer ${TOKEN}x`), false, 'a longer token')
  t.equal(check(`Bearer ${TOKEN.slice(0, -1)}`), false, 'a prefix of the token')
  t.equal(check(TOKEN), false, 'the token without the scheme')
  t.equal(check(`Basic ${TOKEN}`), false, 'another scheme')
  t.equal(check(`Bearer ${TOKEN} extra`), false, 'anything after the token')
  t.equal(check(''), false)
  t.equal(check(undefined), false, 'no header')
})

t.test('without a configured token nothing passes, not even an empty one', async (t) => {
  const check = bearerCheck(undefined)
  t.equal(check(undefined), false)
  t.equal(check(''), false)
  t.equal(check('Bearer '), false)
  t.equal(check(`Bearer ${TOKEN}`), false)
})
