// The `api` process: listens, runs the embedded ingest worker unless INGEST_WORKER=false, keeps the
// daily schedule upserted, and shuts down in order on a signal: stop intake (HTTP server, worker),
// then close the clients.
import closeWithGrace from 'close-with-grace'
import { loadConfig, type Config } from '../shared/config.js'
import { createLogger, type Logger } from '../shared/logger.js'
import { createRegistry } from '../shared/metrics.js'
import { createIngestWorker } from '../queues/ingest-worker.js'
import { buildApp, type App } from './app.js'

export interface ApiServer {
  app: App
  /** the address the server listens on */
  url: string
  close: () => Promise<void>
}

export interface StartApiOptions {
  config: Config
  logger?: Logger
}

export async function startApi ({ config, logger = createLogger(config.logLevel, 'api') }: StartApiOptions): Promise<ApiServer> {
  // One registry for the process: the app's metrics, the embedded worker's and Node's own.
  const metricsRegistry = createRegistry('api')
  const app = buildApp({ config, logger, metricsRegistry })
  await app.ready()
  const worker = config.ingestWorker ? createIngestWorker({ config, logger, metricsRegistry }) : null
  if (worker === null) logger.info('INGEST_WORKER=false: ingest jobs run in a separate worker process')

  let closing: Promise<void> | undefined
  let retryTimer: NodeJS.Timeout | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      clearTimeout(retryTimer)
      const results = await Promise.allSettled([app.close(), worker?.close()])
      for (const result of results) {
        if (result.status === 'rejected') logger.error({ err: result.reason }, 'error while closing the api')
      }
    })()
    return closing
  }

  // The schedule lives in Redis; a Redis outage at start-up must not keep the API from serving
  // (it answers 503 until Redis is back), so keep trying in the background.
  const initSchedule = async (attempt: number): Promise<void> => {
    try {
      await app.ingestRuns.init()
    } catch (err) {
      if (closing !== undefined) return
      const delay = Math.min(1000 * 2 ** attempt, 30_000)
      logger.error({ err, retryInMs: delay }, 'could not upsert the daily ingest schedule')
      retryTimer = setTimeout(() => { initSchedule(attempt + 1).catch(() => {}) }, delay)
    }
  }
  await initSchedule(0)

  try {
    const url = await app.listen({ port: config.port, host: config.host })
    return { app, url, close }
  } catch (err) {
    await close()
    throw err
  }
}

/** `coupons api`: runs until a signal, then closes gracefully; exits non-zero on a crash. */
export async function apiCommand (argv: string[]): Promise<void> {
  if (argv.length > 0) throw new Error(`api takes no arguments (configure it with environment variables), got "${argv.join(' ')}"`)
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'api')
  const server = await startApi({ config, logger })
  closeWithGrace({ delay: 10_000, logger }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, 'api crashed; closing')
    else logger.info({ signal }, 'api closing')
    await server.close()
  })
}
