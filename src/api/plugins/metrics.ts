// The api's Prometheus metrics: `fastify.metrics` for the routes to count with, a duration
// observer on every route registered after this plugin, and GET /metrics (METRICS_TOKEN as Bearer,
// or open with METRICS_PUBLIC=true; refused otherwise). The live set's gauges and the queue depths
// are read from Redis and BullMQ when Prometheus scrapes, never on a request's path.
import fp from 'fastify-plugin'
import type { onResponseHookHandler } from 'fastify'
import { Gauge, type Registry } from 'prom-client'
import type { Config } from '../../shared/config.js'
import type { Logger } from '../../shared/logger.js'
import { createRegistry, METRICS_PATH, swapGauges, type LiveSet } from '../../shared/metrics.js'
import { metricsAllowed } from '../../shared/metrics-server.js'
import { META, redisKeys } from '../../shared/redis-keys.js'
import { bearerAuth } from '../admin-auth.js'
import { ApiMetrics } from '../api-metrics.js'
import { fromDependency, shedOnlyWhenOverloaded } from '../http-errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: ApiMetrics
  }
}

export interface MetricsPluginOptions {
  config: Config
  logger: Logger
  /** the process's registry (server.ts adds Node's own metrics and the ingest worker's); default: one of the app's own */
  registry?: Registry
  /** how long a scrape waits for Redis or BullMQ */
  dependencyTimeoutMs: number
}

export default fp<MetricsPluginOptions>(async (fastify, { config, logger, registry, dependencyTimeoutMs }) => {
  const metrics = new ApiMetrics(registry ?? createRegistry('api', { processMetrics: false }))
  fastify.decorate('metrics', metrics)

  fastify.addHook('onRoute', (route) => {
    // A static file's route answers HEAD and GET: it is labelled GET, like the routes whose HEAD Fastify adds.
    const method = Array.isArray(route.method) ? route.method.find((m) => m !== 'HEAD') ?? route.method[0] : route.method
    const observe = metrics.routeObserver(method, route.url ?? route.path)
    const onResponse: onResponseHookHandler = (_request, reply, done) => {
      observe(reply.statusCode, reply.elapsedTime)
      done()
    }
    const existing = route.onResponse === undefined ? [] : Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse]
    route.onResponse = [...existing, onResponse] as typeof route.onResponse
  })

  const keys = redisKeys(config.redisPrefix)
  // A scrape during an outage still answers: the gauges that cannot be read are left out.
  const quietly = async <T>(what: string, call: () => Promise<T>): Promise<T | null> => {
    try {
      return await fromDependency(what, dependencyTimeoutMs, call)
    } catch (err) {
      logger.debug({ err }, `metrics: ${what} could not be read`)
      return null
    }
  }
  swapGauges(metrics.registry, keys.valid, async (): Promise<LiveSet | null> => {
    const meta = await quietly('redis', () => fastify.redis.hmget(keys.meta, META.lastSwapAt, META.validCount, META.swapMs))
    if (meta === null || meta[0] === null) return null
    return { lastSwapAt: meta[0], validCount: Number(meta[1] ?? 0), swapMs: Number(meta[2] ?? 0) }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'coupons_ingest_queue_jobs',
    help: 'Ingest file jobs by BullMQ state (waiting, active, delayed, prioritized, completed, failed)',
    labelNames: ['state'],
    registers: [metrics.registry],
    async collect () {
      const counts = await quietly('the ingest queue', () => fastify.ingestRuns.counts())
      this.reset()
      for (const [state, count] of Object.entries(counts ?? {})) this.set({ state }, count)
    }
  })

  if (config.metricsToken === undefined && !config.metricsPublic) {
    logger.info('GET /metrics is closed: set METRICS_TOKEN (or METRICS_PUBLIC=true) for Prometheus to scrape it')
  }
  fastify.get(METRICS_PATH, {
    // Prometheus' text format, not JSON: documented in the README, not in the OpenAPI document.
    schema: { hide: true },
    // A Redis outage is when the metrics matter most: only an overloaded process sheds a scrape.
    config: { pressureHandler: shedOnlyWhenOverloaded },
    onRequest: bearerAuth(metricsAllowed(config), 'coupons-metrics', 'a valid metrics bearer token is required'),
    logLevel: 'warn'
  }, async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
}, { name: 'metrics', dependencies: ['redis', 'ingest-runs'] })
