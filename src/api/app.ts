// Builds the HTTP API (DESIGN section 7) without listening: tests drive it with app.inject, the
// OpenAPI script reads app.swagger(), and src/api/server.ts is the only place that listens.
import { STATUS_CODES } from 'node:http'
import Fastify, { LogController, type FastifyError } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import underPressure from '@fastify/under-pressure'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Registry } from 'prom-client'
import type { FlashSale } from '../flash-sale/contract.js'
import type { Config } from '../shared/config.js'
import { createLogger, type Logger } from '../shared/logger.js'
import { HttpError } from './http-errors.js'
import type { ErrorResponse } from './schemas.js'
import flashSalePlugin from './plugins/flash-sale.js'
import ingestRunsPlugin, { type IngestRunsApi } from './plugins/ingest-runs.js'
import metricsPlugin from './plugins/metrics.js'
import postgresPlugin from './plugins/postgres.js'
import redisPlugin from './plugins/redis.js'
import adminRoutes from './routes/admin.js'
import couponRoutes from './routes/coupons.js'
import dashboardRoutes from './routes/dashboard.js'
import flashSaleRoutes from './routes/flash-sale.js'
import { lazyChildLogger } from './lazy-child-logger.js'

export interface BuildAppOptions {
  config: Config
  logger?: Logger
  /** an IngestRuns owned by the caller; default: the app makes (and closes) its own */
  ingestRuns?: IngestRunsApi
  /** the flash sale, owned by the caller; default: the app makes (and closes) one for EVENT_DRIVEN_ENABLED */
  flashSale?: FlashSale
  /** how often the Redis health check runs; while it fails every route answers 503 */
  healthCheckIntervalMs?: number
  /** how long start-up waits for Redis before serving anyway */
  redisConnectWaitMs?: number
  /** how long an admin request waits for Redis, BullMQ or Kafka before answering 503 */
  dependencyTimeoutMs?: number
  /** load shedding: a mean event-loop delay above this answers 503 (0 disables) */
  maxEventLoopDelayMs?: number
  /** the process's Prometheus registry (GET /metrics serves it); default: one of the app's own */
  metricsRegistry?: Registry
}

/** Longest path parameter the router accepts; longer codes must still get a clean 400, not a 404. */
const MAX_PARAM_LENGTH = 16 * 1024

export function buildApp (options: BuildAppOptions) {
  const { config } = options
  const logger = options.logger ?? createLogger(config.logLevel, 'api')
  const app = Fastify({
    loggerInstance: logger,
    trustProxy: config.trustProxy,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Checkout calls the lookup thousands of times a second: no access-log lines for it.
    logController: new LogController({ disableRequestLogging: (request: { url?: string }) => request.url?.startsWith('/coupons/') === true }),
    // …and no per-request child logger either, unless the request logs (src/api/lazy-child-logger.ts).
    childLoggerFactory: lazyChildLogger
  }).withTypeProvider<TypeBoxTypeProvider>()

  // The one place that answers errors: the routes' HttpErrors, Fastify's validation errors, and
  // the plugins' 429 and 503 (rate-limit and under-pressure set their own Retry-After first).
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
    const http = err instanceof HttpError ? err : undefined
    if (status >= 500 && http?.log !== false) request.log[status === 503 ? 'warn' : 'error']({ err }, 'request failed')
    if (http?.retryAfter !== undefined) reply.header('retry-after', http.retryAfter)
    // Client errors explain themselves; server errors never show internals.
    const message = status < 500 || http !== undefined ? err.message : STATUS_CODES[status] ?? 'Error'
    const body: ErrorResponse = { statusCode: status, error: STATUS_CODES[status] ?? 'Error', ...(http?.code !== undefined ? { code: http.code } : {}), message }
    return reply.code(status).send(body)
  })

  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Coupon validation service',
        description: 'Validates promo codes against the set published by the ingestion pipeline, and lets operators run and watch that pipeline.',
        version: '1.0.0'
      },
      tags: [
        { name: 'coupons', description: 'Used by checkout' },
        { name: 'admin', description: 'Operators (the /dashboard page calls these); Authorization: Bearer <ADMIN_TOKEN>' },
        { name: 'flash-sale', description: 'Limited-stock coupons that each user claims once' },
        { name: 'health', description: 'Liveness and load shedding' }
      ],
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' } }
      }
    }
  })
  app.register(swaggerUi, { routePrefix: '/docs' })

  const dependencyTimeoutMs = options.dependencyTimeoutMs ?? 5000
  app.register(redisPlugin, { target: config, logger, connectWaitMs: options.redisConnectWaitMs })
  app.register(ingestRunsPlugin, { config, logger, ingestRuns: options.ingestRuns })
  app.register(postgresPlugin, { databaseUrl: config.databaseUrl, logger })
  app.register(flashSalePlugin, { config, logger, flashSale: options.flashSale })
  // Before every route it measures: its onRoute hook sees only the routes registered after it.
  app.register(metricsPlugin, { config, logger, registry: options.metricsRegistry, dependencyTimeoutMs })

  app.register(underPressure, {
    maxEventLoopDelay: options.maxEventLoopDelayMs ?? 1000,
    retryAfter: 5,
    healthCheck: async (instance) => (await instance.redis.ping()) === 'PONG',
    healthCheckInterval: options.healthCheckIntervalMs ?? 1000,
    exposeStatusRoute: {
      url: '/health',
      routeOpts: { logLevel: 'warn' },
      routeSchemaOpts: {
        tags: ['health'],
        summary: 'Healthy when Redis answers and the server is not overloaded; 503 otherwise'
      }
    }
  })

  app.register(rateLimit, { global: false })
  app.register(couponRoutes, {
    redisPrefix: config.redisPrefix,
    rateLimitMax: config.rateLimitMax,
    rateLimitWindowMs: config.rateLimitWindowMs
  })
  app.register(adminRoutes, { prefix: '/admin', config, dependencyTimeoutMs })
  app.register(flashSaleRoutes)
  app.register(dashboardRoutes)

  return app
}

export type App = ReturnType<typeof buildApp>
