// Redis connections, one per role (after BullMQ's production guide): a blocking BullMQ worker
// must retry forever, while anything answering an HTTP request must fail fast so the API can say
// 503 instead of hanging.
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from './logger.js'

export type RedisRole =
  /** the API's SISMEMBER client: never queue a command while disconnected */
  | 'query'
  /** adds jobs or reads queue state from an HTTP request: fail fast too */
  | 'producer'
  /** BullMQ workers, the scheduler and the aggregator: wait out outages */
  | 'worker'

const roleOptions: Record<RedisRole, RedisOptions> = {
  query: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 },
  producer: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 },
  worker: { maxRetriesPerRequest: null, enableReadyCheck: true }
}

export function createRedis (url: string, role: RedisRole, logger: Logger, extra: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    connectionName: `coupons-${role}`,
    // Reconnect quickly at first, then every 2 s at most, forever: an outage ends by itself.
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
    ...roleOptions[role],
    ...extra
  })
  // Without a listener ioredis prints unhandled errors; with it they are logged once each.
  let lastError = ''
  redis.on('error', (err: Error) => {
    if (err.message === lastError) return
    lastError = err.message
    logger.warn({ err, role }, 'redis connection error')
  })
  redis.on('ready', () => {
    if (lastError !== '') logger.info({ role }, 'redis connection restored')
    lastError = ''
  })
  return redis
}
