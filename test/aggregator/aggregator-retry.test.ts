// The aggregator's retry policy (isRetriable, retryDelayMs of src/aggregator/aggregator.ts): which
// failures a later attempt can fix, and how long to wait. Pure logic, apart from aggregator.test.ts
// so that it runs without Kafka; the errors are the real classes KafkaJS and ioredis throw.
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import kafkajs from 'kafkajs'
import t from 'tap'
import { CouponsError } from '../../src/shared/errors.js'
import { isRetriable, retryDelayMs } from '../../src/aggregator/aggregator.js'
import { testConfig } from '../helpers/test-env.js'

// KafkaJS spreads its error classes into module.exports, which Node cannot name for an ESM import.
const { KafkaJSConnectionError, KafkaJSError, KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError, KafkaJSRequestTimeoutError } = kafkajs

/** A broker's error reply as KafkaJS raises it: its protocol error built from the error code's description. */
function protocolError (message: string, type: string, code: number, retriable: boolean): Error {
  return new KafkaJSProtocolError(Object.assign(new Error(message), { type, code, retriable }))
}

/** A localhost port nothing listens on (it was free a moment ago). */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve, reject) => { server.close((err) => { if (err === undefined) resolve(); else reject(err) }) })
  return port
}

t.test('a CouponsError says itself whether a retry can help', async (t) => {
  t.equal(isRetriable(new CouponsError('AGGREGATOR_STAGING_FAILED', 'x', { retriable: true })), true)
  t.equal(isRetriable(new CouponsError('AGGREGATOR_COUNT_MISMATCH', 'x')), false, 'not retriable unless it says so')
  t.equal(isRetriable(new CouponsError('AGGREGATOR_COUNT_MISMATCH', 'Connection is closed.')), false, 'its flag wins over a message that looks like a lost Redis connection')
})

t.test('a KafkaJS error is retriable exactly when KafkaJS marks it so', async (t) => {
  t.equal(isRetriable(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED')), true, 'a lost connection')
  t.equal(isRetriable(new KafkaJSRequestTimeoutError('Request Produce(key: 0, version: 7) timed out')), true, 'a request timeout')
  t.equal(isRetriable(protocolError('This server is not the leader for that topic-partition', 'NOT_LEADER_FOR_PARTITION', 6, true)), true, 'a retriable protocol error')
  t.equal(isRetriable(protocolError('Not authorized to access topics: [Topic authorization failed]', 'TOPIC_AUTHORIZATION_FAILED', 29, false)), false, 'a protocol error KafkaJS does not retry')
  t.equal(isRetriable(new KafkaJSNonRetriableError('x')), false)
  t.equal(isRetriable(new KafkaJSError('x', { retriable: false })), false)
  t.equal(isRetriable(new KafkaJSError('Connection is closed.', { retriable: false })), false, 'its flag wins over its message')
})

t.test('KafkaJS running out of its own retries (a broker down for longer than they last) is retriable', async (t) => {
  const exhausted = new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED'), { retryCount: 8, retryTime: 5000 })
  t.equal((exhausted as { retriable?: boolean }).retriable, false, 'KafkaJS itself marks it not retriable')
  t.equal(isRetriable(exhausted), true, 'but for a run it is an outage to wait out, within AGGREGATOR_MAX_ATTEMPTS')
})

t.test('a command on a closed ioredis connection is retriable', async (t) => {
  const redis = new Redis(testConfig('retry').redisUrl)
  await redis.ping()
  await redis.quit()
  const err: unknown = await redis.get('any').then(() => null, (e: unknown) => e)
  t.match(err, { message: 'Connection is closed.' }, 'what ioredis throws')
  t.equal(isRetriable(err), true)
})

t.test('a command that ioredis gave up on after its retries is retriable', async (t) => {
  const redis = new Redis({ host: '127.0.0.1', port: await closedPort(), maxRetriesPerRequest: 0 })
  redis.on('error', () => {})
  t.teardown(() => { redis.disconnect() })
  const err: unknown = await redis.get('any').then(() => null, (e: unknown) => e)
  t.match(err, { name: 'MaxRetriesPerRequestError' }, 'what ioredis throws')
  t.equal(isRetriable(err), true)
})

t.test('a Redis reply is retriable only when it says Redis refuses for a while (OOM, loading, a cluster failing over)', async (t) => {
  const reply = (message: string): Error => Object.assign(new Error(message), { name: 'ReplyError' })
  for (const message of ['OOM command not allowed when used memory > \'maxmemory\'.', 'LOADING Redis is loading the dataset in memory', 'CLUSTERDOWN The cluster is down', 'TRYAGAIN Multiple keys request during rehashing of slot', 'READONLY You can\'t write against a read only replica.']) {
    t.equal(isRetriable(reply(message)), true, message)
  }
  for (const message of ['WRONGTYPE Operation against a key holding the wrong kind of value', 'NOPERM User x has no permissions to run the \'sadd\' command', 'ERR unknown command']) {
    t.equal(isRetriable(reply(message)), false, message)
  }
  t.equal(isRetriable(new Error('Too many Cluster redirections. Last error: Error: CLUSTERDOWN')), true, 'ioredis giving up its cluster redirections')
  t.equal(isRetriable(Object.assign(new Error('Failed to refresh slots cache.'), { name: 'ClusterAllFailedError' })), true)
})

t.test('any other error is not retriable: a bug or bad data until shown otherwise', async (t) => {
  t.equal(isRetriable(new Error('boom')), false)
  t.equal(isRetriable(new TypeError('Cannot read properties of undefined')), false)
  t.equal(isRetriable(Object.assign(new Error('x'), { retriable: true })), false, 'a retriable flag counts only on a CouponsError or a KafkaJS error')
  t.equal(isRetriable('a thrown string'), false)
  t.equal(isRetriable(undefined), false, 'a thrown undefined')
  t.equal(isRetriable(null), false, 'a thrown null')
})

t.test('the retry delay starts at the base, doubles with each consecutive failure, and stops at 60 s', async (t) => {
  t.same([0, 1, 2, 3, 4, 5].map((failures) => retryDelayMs(1000, failures)), [1000, 1000, 2000, 4000, 8000, 16_000], 'no failure yet waits the base too')
  t.same([7, 50, 1e9, Infinity].map((failures) => retryDelayMs(1000, failures)), [60_000, 60_000, 60_000, 60_000], 'however many failures: a finite 60 s')
  t.equal(retryDelayMs(90_000, 1), 60_000, 'a base over 60 s waits 60 s')
})
