// The api's metrics (GET /metrics): request durations by route and status, lookups by outcome,
// flash-sale requests by outcome. The live set and the queue are read at each scrape by the
// metrics plugin. GET /coupons/:code is the hot route: what it records costs an integer increment
// and one histogram observation, nothing awaited.
import { Counter, Histogram, type Registry } from 'prom-client'

export const LOOKUP_OUTCOMES = ['valid', 'invalid', 'malformed', 'unavailable'] as const
export type LookupOutcome = typeof LOOKUP_OUTCOMES[number]

/** Seconds; a lookup takes about a millisecond, an admin route up to the dependency timeout. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

interface Observer { observe: (value: number) => void }

export class ApiMetrics {
  readonly registry: Registry
  /** Lookups by outcome, as plain numbers: the hot route adds to them, a scrape turns them into the counter. */
  readonly lookups: Record<LookupOutcome, number> = { valid: 0, invalid: 0, malformed: 0, unavailable: 0 }
  readonly #requests: Histogram<'method' | 'route' | 'status_code'>
  readonly #flashSale: Counter<'kind' | 'outcome'>

  constructor (registry: Registry) {
    this.registry = registry
    this.#requests = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Duration of HTTP requests by route (its pattern, not the path) and status',
      labelNames: ['method', 'route', 'status_code'],
      buckets: DURATION_BUCKETS,
      registers: [registry]
    })
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

  /**
   * The observer of one route: it finds the histogram's child of a status once and keeps it, so
   * that a request costs a Map lookup and an observation, not a label set built per request.
   */
  routeObserver (method: string, route: string): (statusCode: number, ms: number) => void {
    const children = new Map<number, Observer>()
    return (statusCode, ms) => {
      let child = children.get(statusCode)
      if (child === undefined) {
        child = this.#requests.labels(method, route, String(statusCode))
        children.set(statusCode, child)
      }
      child.observe(ms / 1000)
    }
  }

  flashSaleRequest (kind: string, outcome: string): void {
    this.#flashSale.inc({ kind, outcome })
  }
}
