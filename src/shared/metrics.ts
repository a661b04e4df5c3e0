// Prometheus metrics of every process (prom-client; prom-client writes the text format). Each
// process keeps its metrics in one Registry labelled with its role; the api serves it at GET
// /metrics, the other roles on a small server at METRICS_PORT (src/shared/metrics-server.ts).
// Metrics that two roles both report (the live set's gauges) are declared here once.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'

export const METRICS_PATH = '/metrics'

/** A registry for one process; with `processMetrics`, Node's own (CPU, memory, event-loop delay, GC). */
export function createRegistry (role: string, { processMetrics = true }: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry()
  registry.setDefaultLabels({ role })
  if (processMetrics) collectDefaultMetrics({ register: registry })
  return registry
}

export interface LiveSet {
  /** ISO time of the last swap */
  lastSwapAt: string
  validCount: number
  swapMs: number
}

export interface SwapGauges {
  set: (live: LiveSet) => void
  reset: () => void
}

/**
 * The live set's gauges: when it was last swapped, how many codes it holds, how long the swap
 * took. The aggregator sets them after each swap it makes; the api reads them from Redis at
 * each scrape (`collect`), so they are right whichever aggregator swapped. Labelled with the live
 * set's key (`set`), so that "no set published" and "Redis unreadable" are no sample at all
 * rather than a 0 that an alert would take for an empty set.
 */
export function swapGauges (registry: Registry, setKey: string, collect?: () => Promise<LiveSet | null>): SwapGauges {
  // The three gauges are collected in parallel: one read of Redis serves them all.
  let reading: Promise<void> | null = null
  const read = collect === undefined
    ? undefined
    : async (): Promise<void> => {
      reading ??= collect().then((live) => { if (live === null) gauges.reset(); else gauges.set(live) }).finally(() => { reading = null })
      return reading
    }
  const labelNames = ['set'] as const
  const lastSwap = new Gauge({ name: 'coupons_valid_set_last_swap_timestamp_seconds', help: 'Unix time of the last swap of the live valid set', labelNames, registers: [registry], collect: read })
  const validCount = new Gauge({ name: 'coupons_valid_set_codes', help: 'Codes in the live valid set', labelNames, registers: [registry], collect: read })
  const swapSeconds = new Gauge({ name: 'coupons_valid_set_swap_seconds', help: 'Duration of the last swap: the staging writes of every partition, summed over the aggregator instances (the atomic step itself takes well under a millisecond)', labelNames, registers: [registry], collect: read })
  const labels = { set: setKey }
  const gauges: SwapGauges = {
    set (live) {
      lastSwap.set(labels, Date.parse(live.lastSwapAt) / 1000)
      validCount.set(labels, live.validCount)
      swapSeconds.set(labels, live.swapMs / 1000)
    },
    reset () {
      lastSwap.reset()
      validCount.reset()
      swapSeconds.reset()
    }
  }
  return gauges
}
