// The operator's routes under /admin (DESIGN section 7): start a run, follow its files, see the
// live set and the schedule, list the flash-sale coupons. Every route is behind the bearer token.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { listCoupons } from '../../flash-sale/store.js'
import { checkRunFiles, type Config } from '../../shared/config.js'
import { isCouponsError } from '../../shared/errors.js'
import { META, redisKeys } from '../../shared/redis-keys.js'
import { checkRunPartitions, isFullRun, livePartitions } from '../../ingest/run-partitions.js'
import { adminAuth } from '../admin-auth.js'
import { fromDependency, HttpError } from '../http-errors.js'
import { Run, StartedRun } from '../../shared/run-contract.js'
import { ErrorResponse, FlashSaleCouponList, FlashSaleCouponsQuery, IngestBody, RunList, RunParams, RunsQuery, Status, errors } from '../schemas.js'

export interface AdminRoutesOptions {
  config: Config
  /** an admin request waits this long for Redis, BullMQ or Kafka before answering 503 */
  dependencyTimeoutMs: number
}

const security = [{ bearerAuth: [] }]

const adminRoutes: FastifyPluginAsyncTypebox<AdminRoutesOptions> = async (fastify, { config, dependencyTimeoutMs }) => {
  if (config.adminToken === undefined) fastify.log.warn('ADMIN_TOKEN is not set: every /admin request will be refused')
  fastify.addHook('onRequest', adminAuth(config.adminToken))

  const keys = redisKeys(config.redisPrefix)
  fastify.post('/ingest', {
    schema: {
      tags: ['admin'],
      summary: 'Start an ingest run',
      description: 'Queues one job per file (a BullMQ flow). The aggregator swaps the new valid set in when every file of the run is complete. ' +
        'A run of only some files is refused with 409 (code INGEST_PARTITIONS_CHANGED) while KAFKA_PARTITIONS differs from the partition count ' +
        'the live set was built with: a run of every file re-partitions them all.',
      security,
      body: IngestBody,
      response: {
        202: StartedRun,
        409: { ...ErrorResponse, description: 'Refused: code INGEST_PARTITIONS_CHANGED (a partial run under a changed KAFKA_PARTITIONS; run every file)' },
        ...errors(400, 401, 500, 503)
      }
    },
    // No body at all means the same as {}: every configured file.
    preValidation: async (request) => { request.body ??= {} }
  }, async (request, reply) => {
    const requested = request.body?.files ?? config.couponFiles
    try {
      checkRunFiles(config, requested)
    } catch (err) {
      throw isCouponsError(err) ? new HttpError(400, err.message) : err
    }
    const files = config.couponFiles.filter((file) => requested.includes(file))
    if (!isFullRun(config, files)) {
      const live = await fromDependency('redis', dependencyTimeoutMs, () => livePartitions(fastify.redis, config.redisPrefix))
      try {
        checkRunPartitions(config, files, live)
      } catch (err) {
        throw isCouponsError(err, 'INGEST_PARTITIONS_CHANGED') ? new HttpError(409, err.message, { code: err.code }) : err
      }
    }
    const run = await fromDependency('the ingest queue', dependencyTimeoutMs, () => fastify.ingestRuns.startRun(files, 'admin'))
    request.log.info({ runId: run.runId, files }, 'ingest run started')
    return reply.code(202).send(run)
  })

  fastify.get('/runs', {
    schema: {
      tags: ['admin'],
      summary: 'Recent runs, newest first',
      security,
      querystring: RunsQuery,
      response: { 200: RunList, ...errors(400, 401, 500, 503) }
    }
  }, async (request) => {
    const runs = await fromDependency('the ingest queue', dependencyTimeoutMs, () => fastify.ingestRuns.listRuns(request.query.limit))
    return { runs }
  })

  fastify.get('/runs/:runId', {
    schema: {
      tags: ['admin'],
      summary: "One run: each file's job state and progress, failure reasons and the swap it produced",
      security,
      params: RunParams,
      response: { 200: Run, ...errors(400, 401, 404, 500, 503) }
    }
  }, async (request) => {
    const run = await fromDependency('the ingest queue', dependencyTimeoutMs, () => fastify.ingestRuns.getRun(request.params.runId))
    if (run === null) throw new HttpError(404, 'no such run')
    return run
  })

  fastify.get('/status', {
    schema: {
      tags: ['admin'],
      summary: 'The live set, the queue and the daily schedule',
      security,
      response: { 200: Status, ...errors(401, 500, 503) }
    }
  }, async () => {
    const [meta, queue, schedule] = await fromDependency('redis', dependencyTimeoutMs, () => Promise.all([
      fastify.redis.hgetall(keys.meta),
      fastify.ingestRuns.counts(),
      fastify.ingestRuns.schedule()
    ]))
    const validCount = meta[META.validCount]
    const swapMs = meta[META.swapMs]
    return {
      lastSwapAt: meta[META.lastSwapAt] ?? null,
      generation: meta[META.generation] ?? null,
      validCount: validCount === undefined ? null : Number(validCount),
      swapMs: swapMs === undefined ? null : Number(swapMs),
      files: config.couponFiles,
      queue,
      schedule
    }
  })

  fastify.get('/flash-sale/coupons', {
    schema: {
      tags: ['admin'],
      summary: 'Flash-sale coupons with their stock, a page at a time in name order',
      description: 'Read from PostgreSQL in both modes (a read applies nothing, so it need not go through the consumer). Empty until the first coupon is created.',
      security,
      querystring: FlashSaleCouponsQuery,
      response: { 200: FlashSaleCouponList, ...errors(400, 401, 500, 503) }
    }
  }, async (request) => {
    const { limit, after } = request.query
    const coupons = await fromDependency('PostgreSQL', dependencyTimeoutMs, () => listCoupons(fastify.pg, limit, after ?? null))
    return { coupons, next: coupons.length === limit ? coupons[limit - 1].name : null }
  })
}

export default adminRoutes
