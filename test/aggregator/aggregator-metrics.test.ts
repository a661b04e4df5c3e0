// The aggregator's metrics after a real run: phase durations, runs, partitions, the live set.
import type { Registry } from 'prom-client'
import t, { type Test } from 'tap'
import { Aggregator } from '../../src/aggregator/aggregator.js'
import { aggregatorMetrics } from '../../src/aggregator/aggregator-metrics.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { createRegistry } from '../../src/shared/metrics.js'
import { RUN_RESULT } from '../../src/shared/redis-keys.js'
import { ingestRun, runResult, setupPipeline, waitFor, type Pipeline } from '../helpers/aggregator-fixtures.js'
import { sampleValue } from '../helpers/metrics-text.js'
import { silentLogger } from '../helpers/test-env.js'

/** An aggregator reporting to its own registry, the way `coupons aggregator` wires its metrics. */
async function meteredAggregator (t: Test, pipeline: Pipeline): Promise<Registry> {
  const registry = createRegistry('aggregator', { processMetrics: false })
  const metrics = aggregatorMetrics(registry, pipeline.config)
  t.teardown(metrics.close)
  const aggregator = new Aggregator({ config: pipeline.config, logger: silentLogger, onRun: metrics.onRun, onPartitions: metrics.onPartitions, onRunFailed: metrics.onRunFailed })
  t.teardown(() => aggregator.close())
  await aggregator.start()
  return registry
}

t.test('after an applied run: one observation per phase, the run, every partition staged and the live set', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-metrics')
  const key = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 12 })
  const registry = await meteredAggregator(t, pipeline)

  const { runId } = await ingestRun(pipeline, pipeline.config.couponFiles)
  const result = await runResult(pipeline, runId)
  t.equal(result[RUN_RESULT.state], 'applied')

  // The result is written by the swap; the run's timings are reported once its clean-up is done too.
  const text = await waitFor('the run to be reported', async () => {
    const text = await registry.metrics()
    return sampleValue(text, 'coupons_aggregation_runs_total', { outcome: 'applied' }) === 1 ? text : null
  }, 30_000)
  for (const phase of ['read', 'decide', 'stage', 'swap', 'cleanup', 'total']) {
    t.equal(sampleValue(text, 'coupons_aggregation_phase_duration_seconds_count', { phase }), 1, `${phase}: one run observed`)
  }
  const total = sampleValue(text, 'coupons_aggregation_phase_duration_seconds_sum', { phase: 'total' }) ?? -1
  const read = sampleValue(text, 'coupons_aggregation_phase_duration_seconds_sum', { phase: 'read' }) ?? -1
  t.ok(total > 0 && read >= 0 && read <= total, `seconds: read ${read} within total ${total}`)
  t.equal(sampleValue(text, 'coupons_aggregation_runs_total', { outcome: 'applied' }), 1)
  t.equal(sampleValue(text, 'coupons_aggregation_partitions_staged_total'), pipeline.config.kafkaPartitions, 'every partition staged once')
  t.ok((sampleValue(text, 'coupons_aggregation_batches_read_total') ?? 0) >= pipeline.config.couponFiles.length, 'at least a batch per file')

  const set = { set: pipeline.keys.valid }
  t.equal(sampleValue(text, 'coupons_valid_set_codes', set), key.valid.length)
  t.equal(sampleValue(text, 'coupons_valid_set_last_swap_timestamp_seconds', set), Date.parse(result[RUN_RESULT.appliedAt]) / 1000)
  t.equal(sampleValue(text, 'coupons_valid_set_swap_seconds', set), Number(result[RUN_RESULT.swapMs]) / 1000)
})

t.test('a run that fails is counted by the instance that recorded it', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-metrics-failed')
  await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 13 })
  const registry = await meteredAggregator(t, pipeline)

  // One file of three, never ingested before: the plan cannot be made (AGGREGATOR_FILES_MISSING).
  const { runId } = await ingestRun(pipeline, [pipeline.config.couponFiles[0]])
  t.equal((await runResult(pipeline, runId))[RUN_RESULT.state], 'failed')
  // The instance counts the run once it has written the result, which the test may read first.
  const text = await waitFor('the failed run to be counted', async () => {
    const text = await registry.metrics()
    return sampleValue(text, 'coupons_aggregation_runs_total', { outcome: 'failed' }) === undefined ? null : text
  }, 30_000)
  t.equal(sampleValue(text, 'coupons_aggregation_runs_total', { outcome: 'failed' }), 1)
  t.equal(sampleValue(text, 'coupons_aggregation_runs_total', { outcome: 'applied' }), undefined, 'and nothing applied')
})
