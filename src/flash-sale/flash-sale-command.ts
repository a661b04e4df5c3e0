// `coupons flash-sale`: the flash-sale consumer process (DESIGN section 11). Run as many as there
// are partitions to share; each migrates the schema at start (the others wait on the lock). Its
// metrics: METRICS_PORT.
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { createRegistry } from '../shared/metrics.js'
import { withMetricsServer } from '../shared/metrics-server.js'
import { runRole } from '../shared/role-lifecycle.js'
import { FlashSaleConsumer } from './flash-sale-consumer.js'

export async function flashSaleCommand (_argv: string[]): Promise<void> {
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'flash-sale')
  const registry = createRegistry('flash-sale')
  const consumer = new FlashSaleConsumer({
    config,
    logger,
    metricsRegistry: registry,
    // Exit non-zero so that the orchestrator (compose, npm start) sees it and restarts it.
    onFatal: () => { consumer.close().finally(() => process.exit(1)) }
  })
  await runRole('flash-sale consumer', logger, withMetricsServer(consumer, { config, registry, logger }))
}
