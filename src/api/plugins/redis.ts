// The API's own Redis connection for the public route: role 'query' (fails fast, never queues a
// command while disconnected), so an outage becomes a 503 at once instead of a hung request.
import fp from 'fastify-plugin'
import type { Logger } from '../../shared/logger.js'
import { createRedis, type RedisClient, type RedisTarget } from '../../shared/redis.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisClient
  }
}

export interface RedisPluginOptions {
  /** the config's Redis URL, or the cluster's seed nodes */
  target: RedisTarget
  logger: Logger
  /** how long start-up waits for a first connection before serving anyway (503 until Redis is up) */
  connectWaitMs?: number
}

export default fp<RedisPluginOptions>(async (fastify, options) => {
  const redis = createRedis(options.target, 'query', options.logger, {
    // A stalled Redis must not hold checkout requests: answer 503 after a second (two at most for
    // a lookup queued behind a stalled batch).
    commandTimeout: 1000,
    // The lookups of one event-loop turn go to Redis in one write, and those arriving while a batch
    // is out wait for it: under load this cuts the syscalls of the api and of Redis (bench:api,
    // docs/BENCHMARKS.md). Only on this connection: it never runs a blocking command.
    enableAutoPipelining: true
  })
  fastify.decorate<RedisClient>('redis', redis)
  fastify.addHook('onClose', async () => {
    if (redis.status === 'ready') {
      await redis.quit().catch(() => redis.disconnect())
    } else {
      redis.disconnect()
    }
  })
  await waitUntilReady(redis, options.connectWaitMs ?? 2000)
}, { name: 'redis' })

/** Resolves when the client is ready or after `ms`; an API that starts during an outage still starts. */
async function waitUntilReady (redis: RedisClient, ms: number): Promise<void> {
  if (redis.status === 'ready') return
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      redis.off('ready', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    redis.once('ready', done)
  })
}
