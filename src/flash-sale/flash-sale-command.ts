// `coupons flash-sale`: the flash-sale consumer process (DESIGN section 11). Run as many as there
// are partitions to share; each migrates the schema at start (the others wait on the lock).
import closeWithGrace from 'close-with-grace'
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { FlashSaleConsumer } from './flash-sale-consumer.js'

export async function flashSaleCommand (_argv: string[]): Promise<void> {
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'flash-sale')
  const consumer = new FlashSaleConsumer({
    config,
    logger,
    // Exit non-zero so that the orchestrator (compose, npm start) sees it and restarts it.
    onFatal: () => { consumer.close().finally(() => process.exit(1)) }
  })
  try {
    await consumer.start()
  } catch (err) {
    // The open pool and Kafka clients would keep a failed process alive.
    await consumer.close()
    throw err
  }
  closeWithGrace({ delay: 15_000, logger: { error: (message: unknown) => { logger.error(message) } } }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, 'flash-sale consumer stopping after an unexpected error')
    else logger.info({ signal }, 'flash-sale consumer stopping')
    await consumer.close()
  })
}
