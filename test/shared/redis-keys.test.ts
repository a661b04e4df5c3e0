import t from 'tap'
import { hasHashTag, redisKeyPatterns, redisKeys } from '../../src/shared/redis-keys.js'

/** The part of a key that decides its cluster slot (Redis's rule: the first non-empty {…}). */
function hashTag (key: string): string {
  const open = key.indexOf('{')
  const close = open < 0 ? -1 : key.indexOf('}', open + 1)
  return close > open + 1 ? key.slice(open + 1, close) : key
}

t.test('the keys of one swap share one hash tag, derived from the prefix', async (t) => {
  const keys = redisKeys('coupons:')
  t.equal(keys.valid, '{coupons:set}:valid')
  t.equal(keys.meta, '{coupons:set}:meta')
  const swapKeys = [keys.valid, keys.meta, keys.staging('r1'), keys.retired('r1'), keys.runResult('r1'), keys.plan, keys.staged('r1')]
  t.same(new Set(swapKeys.map(hashTag)), new Set(['coupons:set']))
  t.equal(hashTag(`${keys.bullPrefix}:ingest-runs:id`), 'coupons:bull', 'BullMQ has a tag of its own')
  t.equal(keys.swaps, 'coupons:swaps', 'channels keep their names')
  t.equal(keys.ingestLock('a.gz'), 'coupons:ingest-lock:a.gz', 'single-key locks keep their names')
  t.not(hashTag(redisKeys('other:').valid), hashTag(keys.valid), 'another prefix, another slot')
})

t.test('a prefix with its own hash tag is used as it is', async (t) => {
  t.ok(hasHashTag('shop:{coupons}:'))
  t.notOk(hasHashTag('coupons:'))
  const keys = redisKeys('shop:{coupons}:')
  t.equal(keys.valid, 'shop:{coupons}:valid')
  t.equal(keys.runResult('r1'), 'shop:{coupons}:run:r1')
  t.equal(keys.bullPrefix, 'shop:{coupons}:bull')
  t.same(redisKeyPatterns('shop:{coupons}:'), ['shop:{coupons}:*'])
})

t.test('the clean-up patterns cover every key of a prefix', async (t) => {
  const keys = redisKeys('coupons:')
  const patterns = redisKeyPatterns('coupons:').map((pattern) => new RegExp(`^${pattern.replace(/[{}]/g, '\\$&').replace('*', '.*')}$`))
  for (const key of [keys.valid, keys.staging('r1'), keys.ingestLock('a.gz'), `${keys.bullPrefix}:ingest-runs:1`]) {
    t.ok(patterns.some((re) => re.test(key)), key)
  }
  t.notOk(patterns.some((re) => re.test(redisKeys('coupons-other:').valid)), 'not the keys of a longer prefix')
})
