// The API's own Redis connection for the public route: role 'query' (fails fast, never queues a
// command while disconnected), so an outage becomes a 503 at once instead of a hung request.
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { Logger } from '../../shared/logger.js'
import { createRedis } from '../../shared/redis.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

export interface RedisPluginOptions {
  url: string
  logger: Logger
  /** how long start-up waits for a first connection before serving anyway (503 until Redis is up) */
  connectWaitMs?: number
}

export default fp<RedisPluginOptions>(async (fastify, options) => {
  const redis = createRedis(options.url, 'query', options.logger, {
    // A stalled Redis must not hold checkout requests: answer 503 after a second.
    commandTimeout: 1000
  })
  fastify.decorate('redis', redis)
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
async function waitUntilReady (redis: Redis, ms: number): Promise<void> {
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
