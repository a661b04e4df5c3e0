// `coupons worker`: the ingest workers alone, for deployments that run them apart from the API
// (INGEST_WORKER=false there). Closing cancels the active file jobs, which go back to the queue
// unpublished and are produced again later as fresh segments. Its metrics: METRICS_PORT.
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { createRegistry } from '../shared/metrics.js'
import { withMetricsServer } from '../shared/metrics-server.js'
import { runRole } from '../shared/role-lifecycle.js'
import { createIngestWorker } from './ingest-worker.js'

const GRACE_MS = 30_000

export async function workerCommand (argv: string[]): Promise<void> {
  if (argv.length > 0) throw new Error(`worker takes no arguments, got ${argv.join(' ')}`)
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'worker')
  const registry = createRegistry('worker')
  const worker = createIngestWorker({ config, logger, metricsRegistry: registry })
  logger.info({ concurrency: config.ingestConcurrency, attempts: config.ingestAttempts }, 'ingest worker started')
  await runRole('worker', logger, withMetricsServer(worker, { config, registry, logger }), GRACE_MS)
}
