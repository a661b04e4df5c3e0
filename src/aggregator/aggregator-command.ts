// `coupons aggregator`: the long-running aggregator process (always its own process: its memory
// peak is one partition's state, which must not share a heap with the API).
import closeWithGrace from 'close-with-grace'
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { Aggregator } from './aggregator.js'

export async function aggregatorCommand (_argv: string[]): Promise<void> {
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'aggregator')
  const aggregator = new Aggregator({ config, logger })
  try {
    await aggregator.start()
  } catch (err) {
    // Without this, the open Redis and Kafka clients would keep a failed process alive; the CLI
    // then exits non-zero with the error.
    await aggregator.close()
    throw err
  }
  // Installed once running: close-with-grace exits 0 on a clean close, which must not hide a
  // failed start.
  closeWithGrace({ delay: 15_000, logger: { error: (message: unknown) => { logger.error(message) } } }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, 'aggregator stopping after an unexpected error')
    else logger.info({ signal }, 'aggregator stopping')
    await aggregator.close()
  })
  logger.info({ files: config.couponFiles, minFiles: config.minFiles, partitions: config.kafkaPartitions }, 'aggregator started')
}
