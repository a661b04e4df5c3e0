// `coupons flash-sale`: the flash-sale consumer process (DESIGN section 11). Run as many as there
// are partitions to share; each migrates the schema at start (the others wait on the lock).
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { runRole } from '../shared/role-lifecycle.js'
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
  await runRole('flash-sale consumer', logger, consumer)
}
