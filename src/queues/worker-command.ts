// `coupons worker`: the ingest workers alone, for deployments that run them apart from the API
// (INGEST_WORKER=false there). Closing cancels the active file jobs, which go back to the queue
// unpublished and are produced again later as fresh segments.
import closeWithGrace from 'close-with-grace'
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { createIngestWorker } from './ingest-worker.js'

const GRACE_MS = 30_000

export async function workerCommand (argv: string[]): Promise<void> {
  if (argv.length > 0) throw new Error(`worker takes no arguments, got ${argv.join(' ')}`)
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'worker')
  const worker = createIngestWorker({ config, logger })
  logger.info({ concurrency: config.ingestConcurrency, attempts: config.ingestAttempts }, 'ingest worker started')
  closeWithGrace({ delay: GRACE_MS, logger }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, 'worker crashed; closing')
    else logger.info({ signal }, 'worker closing')
    await worker.close()
  })
}
