// A steady load on the live route while the pipeline runs (issue 15: checkout must not feel the
// swap). autocannon sends a fixed rate of GET /coupons/:code for as long as the benchmark wants;
// every answer is recorded with the time it arrived, so the latency of any window of the run (before
// it, during the ingest, during the aggregation, the seconds around the swap) is read afterwards.
import autocannon from 'autocannon'

export interface LoadWindow {
  label: string
  /** Date.now() bounds, [from, to) */
  from: number
  to: number
}

export interface WindowFigures {
  label: string
  seconds: number
  requests: number
  p50: number
  p99: number
  max: number
  /** answers other than 200 and 404 (a 503 included) */
  unexpected: number
  statuses: string
}

export class SteadyLoad {
  readonly #instance: autocannon.Instance
  readonly #done: Promise<unknown>
  #at = new Float64Array(1 << 16)
  #latency = new Float64Array(1 << 16)
  #status = new Uint16Array(1 << 16)
  #count = 0
  /** request errors and timeouts, with when they happened */
  readonly errors: number[] = []

  constructor (url: string, paths: string[], rate: number, connections: number) {
    let finished = (): void => {}
    this.#done = new Promise<void>((resolve) => { finished = resolve })
    this.#instance = autocannon({
      url,
      connections,
      overallRate: rate,
      duration: 24 * 3600,
      requests: paths.map((path) => ({ method: 'GET', path }))
    }, finished)
    this.#instance.on('response', (_client, statusCode, _bytes, responseTime) => { this.#record(statusCode, responseTime) })
    this.#instance.on('reqError', () => { this.errors.push(Date.now()) })
  }

  #record (status: number, ms: number): void {
    if (this.#count === this.#at.length) {
      const grow = <T extends Float64Array | Uint16Array>(old: T, bigger: T): T => { bigger.set(old); return bigger }
      this.#at = grow(this.#at, new Float64Array(this.#at.length * 2))
      this.#latency = grow(this.#latency, new Float64Array(this.#latency.length * 2))
      this.#status = grow(this.#status, new Uint16Array(this.#status.length * 2))
    }
    this.#at[this.#count] = Date.now()
    this.#latency[this.#count] = ms
    this.#status[this.#count] = status
    this.#count++
  }

  async stop (): Promise<void> {
    this.#instance.stop()
    await this.#done
  }

  figures (window: LoadWindow): WindowFigures {
    const latencies: number[] = []
    const statuses = new Map<number, number>()
    for (let i = 0; i < this.#count; i++) {
      const at = this.#at[i]
      if (at < window.from || at >= window.to) continue
      latencies.push(this.#latency[i])
      statuses.set(this.#status[i], (statuses.get(this.#status[i]) ?? 0) + 1)
    }
    latencies.sort((a, b) => a - b)
    const quantile = (q: number): number => latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
    const errors = this.errors.filter((at) => at >= window.from && at < window.to).length
    let unexpected = errors
    for (const [status, count] of statuses) if (status !== 200 && status !== 404) unexpected += count
    return {
      label: window.label,
      seconds: (window.to - window.from) / 1000,
      requests: latencies.length,
      p50: quantile(0.5),
      p99: quantile(0.99),
      max: latencies.at(-1) ?? NaN,
      unexpected,
      statuses: [...[...statuses].sort(([a], [b]) => a - b).map(([status, count]) => `${status}: ${count}`), ...(errors > 0 ? [`errors: ${errors}`] : [])].join(', ')
    }
  }
}
