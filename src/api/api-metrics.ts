// The api's metrics (GET /metrics): request durations by route and status, lookups by outcome,
// flash-sale requests by outcome. The live set and the queue are read at each scrape by the
// metrics plugin. GET /coupons/:code is the hot route: what it records costs an integer increment
// and one histogram observation, nothing awaited.
import { Counter, type Registry } from 'prom-client'

export const LOOKUP_OUTCOMES = ['valid', 'invalid', 'malformed', 'unavailable'] as const
export type LookupOutcome = typeof LOOKUP_OUTCOMES[number]

/** Seconds; a lookup takes about a millisecond, an admin route up to the dependency timeout. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

const DURATION_NAME = 'http_request_duration_seconds'
const DURATION_HELP = 'Duration of HTTP requests by route (its pattern, not the path) and status'

/** One route and status of the duration histogram: bucket counts (not yet cumulative), sum, count. */
interface Series {
  labels: { method: string, route: string, status_code: string }
  counts: Float64Array
  sum: number
  count: number
}

/**
 * `http_request_duration_seconds`, a histogram in Prometheus' format, whose observation costs a
 * bucket search and three additions: prom-client's Histogram validates and hashes the label set on
 * every observe (about a quarter of a lookup's cost, issue 15). Each route finds its series once
 * per status; a scrape turns them into the histogram's samples (cumulative buckets, +Inf, sum and
 * count), the shape prom-client's registry writes for any metric whose get() returns it.
 */
class RequestDurations {
  readonly name = DURATION_NAME
  readonly help = DURATION_HELP
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #series: Series[] = []

  observer (method: string, route: string): (statusCode: number, ms: number) => void {
    const byStatus = new Map<number, Series>()
    return (statusCode, ms) => {
      let series = byStatus.get(statusCode)
      if (series === undefined) {
        series = { labels: { method, route, status_code: String(statusCode) }, counts: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 }
        byStatus.set(statusCode, series)
        this.#series.push(series)
      }
      const seconds = ms / 1000
      let bucket = 0
      while (bucket < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[bucket]) bucket++
      if (bucket < DURATION_BUCKETS.length) series.counts[bucket]++
      series.sum += seconds
      series.count++
    }
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string }> }> {
    const values = []
    for (const { labels, counts, sum, count } of this.#series) {
      let cumulative = 0
      for (const [i, le] of DURATION_BUCKETS.entries()) {
        cumulative += counts[i]
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${DURATION_NAME}_bucket` })
      }
      values.push({ labels: { le: '+Inf', ...labels }, value: count, metricName: `${DURATION_NAME}_bucket` })
      values.push({ labels, value: sum, metricName: `${DURATION_NAME}_sum` })
      values.push({ labels, value: count, metricName: `${DURATION_NAME}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    for (const series of this.#series) {
      series.counts.fill(0)
      series.sum = 0
      series.count = 0
    }
  }
}

export class ApiMetrics {
  readonly registry: Registry
  /** Lookups by outcome, as plain numbers: the hot route adds to them, a scrape turns them into the counter. */
  readonly lookups: Record<LookupOutcome, number> = { valid: 0, invalid: 0, malformed: 0, unavailable: 0 }
  readonly #requests = new RequestDurations()
  readonly #flashSale: Counter<'kind' | 'outcome'>

  constructor (registry: Registry) {
    this.registry = registry
    // The registry writes any metric whose get() returns prom-client's shape (RequestDurations).
    registry.registerMetric(this.#requests as unknown as Parameters<Registry['registerMetric']>[0])
    const lookups = this.lookups
    // eslint-disable-next-line no-new
    new Counter({
      name: 'coupons_lookups_total',
      help: 'GET /coupons/:code answers by outcome: valid (200), invalid (404), malformed (400), unavailable (503: Redis down or no set published)',
      labelNames: ['outcome'],
      registers: [registry],
      collect () {
        this.reset()
        for (const outcome of LOOKUP_OUTCOMES) this.inc({ outcome }, lookups[outcome])
      }
    })
    this.#flashSale = new Counter({
      name: 'coupons_flash_sale_requests_total',
      help: 'Flash-sale requests by kind (create, claim, get) and outcome (created, exists, claimed, already-claimed, sold-out, not-found, found, unavailable, outcome-unknown, error)',
      labelNames: ['kind', 'outcome'],
      registers: [registry]
    })
  }

  /** The observer of one route: a request costs a Map lookup by status and an observation. */
  routeObserver (method: string, route: string): (statusCode: number, ms: number) => void {
    return this.#requests.observer(method, route)
  }

  flashSaleRequest (kind: string, outcome: string): void {
    this.#flashSale.inc({ kind, outcome })
  }
}
