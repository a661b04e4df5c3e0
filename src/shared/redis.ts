// Redis connections, one per role (after BullMQ's production guide): a blocking BullMQ worker
// must retry forever, while anything answering an HTTP request must fail fast so the API can say
// 503 instead of hanging. With REDIS_CLUSTER_NODES set every role gets a Redis Cluster client
// instead; the keys are hash-tagged for it (src/shared/redis-keys.ts).
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Config } from './config.js'
import type { Logger } from './logger.js'

/** What every module that takes a Redis connection accepts: one server or a cluster. */
export type RedisClient = Redis | Cluster

/** Where Redis is: the config's URL, or the seed nodes of a cluster when there are any. */
export type RedisTarget = Pick<Config, 'redisUrl' | 'redisClusterNodes'>

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

// Reconnect quickly at first, then every 2 s at most, forever: an outage ends by itself.
const retryStrategy = (attempt: number): number => Math.min(50 * 2 ** attempt, 2000)

export function createRedis (target: RedisTarget, role: RedisRole, logger: Logger, extra: RedisOptions = {}): RedisClient {
  const options: RedisOptions = { connectionName: `coupons-${role}`, retryStrategy, ...roleOptions[role], ...extra }
  const redis = target.redisClusterNodes.length === 0
    ? new Redis(target.redisUrl, options)
    : new Cluster(target.redisClusterNodes, clusterOptions(target.redisUrl, options))
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

/**
 * The role's options split the way ioredis's Cluster wants them: reconnecting, queueing and
 * pipelining are the cluster's (a node connection must keep its own offline queue and leave
 * reconnecting to the cluster, which refreshes the slots), the rest applies to each node's
 * connection. REDIS_URL still brings the credentials and TLS (rediss://), which every node shares.
 */
function clusterOptions (url: string, options: RedisOptions): ClusterOptions {
  const { username, password, protocol } = new URL(url)
  const { retryStrategy: _nodeRetry, enableOfflineQueue, enableReadyCheck, enableAutoPipelining, lazyConnect, ...node } = options
  return {
    clusterRetryStrategy: options.retryStrategy ?? retryStrategy,
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(enableReadyCheck !== undefined ? { enableReadyCheck } : {}),
    ...(enableAutoPipelining !== undefined ? { enableAutoPipelining } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    redisOptions: {
      ...node,
      ...(username !== '' ? { username: decodeURIComponent(username) } : {}),
      ...(password !== '' ? { password: decodeURIComponent(password) } : {}),
      ...(protocol === 'rediss:' ? { tls: {} } : {})
    }
  }
}
