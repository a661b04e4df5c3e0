// The aggregator's metrics (served on METRICS_PORT): how long each phase of a run took, from the
// run's own timings; how far a run in progress is, from the phase events of
// `coupons:aggregator:phase`; and the live set's gauges after each swap this process made.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Counter, Histogram, type Registry } from 'prom-client'
import type { Config } from '../shared/config.js'
import { swapGauges } from '../shared/metrics.js'
import { redisKeys } from '../shared/redis-keys.js'
import type { RunStats } from './aggregator.js'
import type { PartitionsStats } from './decide-partitions.js'
import { RUN_PHASE_CHANNEL, type RunPhaseEvent } from './run-phases.js'

/** Seconds; a run of the real files takes minutes, a test's a fraction of a second. */
const PHASE_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800]

export interface AggregatorMetrics {
  /** pass as the aggregator's onPartitions: this instance's read, decide and stage times */
  onPartitions: (runId: string, stats: PartitionsStats) => void
  /** pass as the aggregator's onRun: the swap's times and outcome (only the instance that swaps sees it) */
  onRun: (stats: RunStats) => void
  /** pass as the aggregator's onRunFailed */
  onRunFailed: (runId: string) => void
  /** stops following the phase events */
  close: () => void
}

export function aggregatorMetrics (registry: Registry, config: Pick<Config, 'redisPrefix'>): AggregatorMetrics {
  const phases = new Histogram({
    name: 'coupons_aggregation_phase_duration_seconds',
    help: 'Time an aggregation spent in each phase: read (Kafka), decide and stage (staging set writes), each observed by every instance for its own partitions; swap, cleanup (old records) and total, observed by the instance that swapped',
    labelNames: ['phase'],
    buckets: PHASE_BUCKETS,
    registers: [registry]
  })
  const runs = new Counter({ name: 'coupons_aggregation_runs_total', help: 'Aggregations finished by this instance, by outcome (applied, superseded: by the instance that swapped; failed: by the instance that recorded it)', labelNames: ['outcome'], registers: [registry] })
  const partitions = new Counter({ name: 'coupons_aggregation_partitions_staged_total', help: 'Partitions decided and written to a staging set (a run stages KAFKA_PARTITIONS of them)', registers: [registry] })
  const batches = new Counter({ name: 'coupons_aggregation_batches_read_total', help: 'Batches of records read from Kafka by aggregations', registers: [registry] })
  const live = swapGauges(registry, redisKeys(config.redisPrefix).valid)

  const onPhase = (message: unknown): void => {
    const event = message as RunPhaseEvent
    if (event.phase === 'staging') partitions.inc()
    else if (event.phase === 'reading') batches.inc()
  }
  subscribe(RUN_PHASE_CHANNEL, onPhase)

  return {
    onPartitions (_runId, stats) {
      for (const phase of ['read', 'decide', 'stage'] as const) phases.observe({ phase }, stats.ms[phase] / 1000)
    },
    onRun (stats) {
      for (const phase of ['swap', 'cleanup', 'total'] as const) phases.observe({ phase }, stats.ms[phase] / 1000)
      runs.inc({ outcome: stats.outcome.state })
      if (stats.outcome.state === 'applied') live.set({ lastSwapAt: stats.outcome.appliedAt, validCount: stats.outcome.validCount, swapMs: stats.outcome.swapMs })
    },
    onRunFailed () { runs.inc({ outcome: 'failed' }) },
    close () { unsubscribe(RUN_PHASE_CHANNEL, onPhase) }
  }
}
