// `coupons aggregator`: the long-running aggregator process (always its own process: its memory
// peak is one partition's state, which must not share a heap with the API).
import { loadConfig } from '../shared/config.js'
import { createLogger } from '../shared/logger.js'
import { lowerPriority } from '../shared/process-priority.js'
import { runRole } from '../shared/role-lifecycle.js'
import { Aggregator } from './aggregator.js'

export async function aggregatorCommand (_argv: string[]): Promise<void> {
  const config = loadConfig()
  const logger = createLogger(config.logLevel, 'aggregator')
  lowerPriority(config.pipelineNice, logger)
  const aggregator = new Aggregator({ config, logger })
  await runRole('aggregator', logger, aggregator)
  logger.info({ files: config.couponFiles, minFiles: config.minFiles, partitions: config.kafkaPartitions }, 'aggregator started')
}
