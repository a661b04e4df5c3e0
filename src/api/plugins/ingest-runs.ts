// The queue side of the admin routes: one IngestRuns (BullMQ flows, the daily scheduler and run
// views, on its own fail-fast Redis connection) decorated on the app and closed with it.
import fp from 'fastify-plugin'
import type { Config } from '../../shared/config.js'
import type { Logger } from '../../shared/logger.js'
import { IngestRuns } from '../../queues/ingest-runs.js'

/** What the admin routes use of IngestRuns. */
export type IngestRunsApi = Pick<IngestRuns, 'init' | 'startRun' | 'getRun' | 'listRuns' | 'counts' | 'schedule' | 'close'>

declare module 'fastify' {
  interface FastifyInstance {
    ingestRuns: IngestRunsApi
  }
}

export interface IngestRunsPluginOptions {
  config: Config
  logger: Logger
  /** an instance owned by the caller (who closes it); default: one made and closed here */
  ingestRuns?: IngestRunsApi
}

export default fp<IngestRunsPluginOptions>(async (fastify, options) => {
  const owned = options.ingestRuns === undefined
  const ingestRuns = options.ingestRuns ?? new IngestRuns({ config: options.config, logger: options.logger.child({ component: 'ingest-runs' }) })
  fastify.decorate('ingestRuns', ingestRuns)
  if (owned) fastify.addHook('onClose', async () => { await ingestRuns.close() })
}, { name: 'ingest-runs' })
