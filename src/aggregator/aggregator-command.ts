// `coupons aggregator`: the long-running aggregator process (always its own process: its memory
// peak is about two partitions' states, one read while the other is decided, which must not share
// a heap with the API). Its metrics: METRICS_PORT.
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { createRegistry } from '../shared/metrics.js'
import { withMetricsServer } from '../shared/metrics-server.js'
import { lowerPriority } from '../shared/process-priority.js'
import { runRole } from '../shared/role-lifecycle.js'
import { Aggregator } from './aggregator.js'
import { aggregatorMetrics } from './aggregator-metrics.js'

export async function aggregatorCommand (_argv: string[]): Promise<void> {
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'aggregator')
  lowerPriority(config.pipelineNice, logger)
  const registry = createRegistry('aggregator')
  const metrics = aggregatorMetrics(registry, config)
  const aggregator = new Aggregator({
    config,
    logger,
    onRun: metrics.onRun,
    onPartitions: metrics.onPartitions,
    onRunFailed: metrics.onRunFailed,
    // The group consumer is gone for good: exit, and let the supervisor start a fresh instance.
    onFatal: () => { aggregator.close().finally(() => process.exit(1)).catch(() => {}) }
  })
  await runRole('aggregator', logger, withMetricsServer(aggregator, { config, registry, logger }))
  logger.info({ files: config.couponFiles, minFiles: config.minFiles, group: config.aggregatorGroupId, member: aggregator.member }, 'aggregator started')
}
