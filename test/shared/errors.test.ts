import t from 'tap'
import { CouponsError, errorCodes, isCouponsError } from '../../src/shared/errors.js'

t.test('every error code is listed once, in UPPER_SNAKE_CASE', async (t) => {
  t.equal(new Set(errorCodes).size, errorCodes.length, 'no code twice')
  for (const code of errorCodes) t.match(code, /^[A-Z]+(_[A-Z]+)+$/, code)
})

t.test('a CouponsError carries its code, cause and retriability', async (t) => {
  const cause = new Error('socket closed')
  const err = new CouponsError('INGEST_KAFKA_FAILED', 'producing failed', { cause, retriable: true })
  t.equal(err.code, 'INGEST_KAFKA_FAILED')
  t.equal(err.message, 'producing failed')
  t.equal(err.cause, cause)
  t.equal(err.retriable, true)
  t.equal(err.name, 'CouponsError')
  t.equal(new CouponsError('CONFIG_INVALID', 'bad').retriable, false, 'not retriable unless said so')
})

t.test('isCouponsError matches the class, and the code when one is given', async (t) => {
  const err = new CouponsError('INGEST_TRUNCATED_GZIP', 'cut short')
  t.equal(isCouponsError(err), true)
  t.equal(isCouponsError(err, 'INGEST_TRUNCATED_GZIP'), true)
  t.equal(isCouponsError(err, 'INGEST_CORRUPT_GZIP'), false)
  t.equal(isCouponsError(Object.assign(new Error('look-alike'), { code: 'INGEST_TRUNCATED_GZIP' })), false, 'a plain Error with the same code is not one')
  t.equal(isCouponsError(undefined), false)
})
