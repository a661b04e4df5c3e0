// The api's own duration histogram (RequestDurations in src/api/api-metrics.ts) must be exactly
// what prom-client's Histogram would expose for the same observations: same samples, same labels,
// same order of buckets, so that dashboards and recording rules do not see the change.
import { Histogram, Registry } from 'prom-client'
import t from 'tap'
import { ApiMetrics } from '../../src/api/api-metrics.js'

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

function durationLines (text: string): string[] {
  return text.split('\n').filter((line) => line.startsWith('http_request_duration_seconds'))
}

t.test('the duration histogram exposes exactly what prom-client\'s Histogram exposes for the same requests', async (t) => {
  const ours = new Registry()
  const metrics = new ApiMetrics(ours)
  const reference = new Registry()
  const histogram = new Histogram({ name: 'http_request_duration_seconds', help: 'x', labelNames: ['method', 'route', 'status_code'], buckets: BUCKETS, registers: [reference] })

  const lookups = metrics.routeObserver('GET', '/coupons/:code')
  const claims = metrics.routeObserver('POST', '/api/coupons/claim')
  // Below the first bucket, on a bound, between bounds, above the last one.
  const requests: Array<[typeof lookups, string, string, number, number]> = [
    [lookups, 'GET', '/coupons/:code', 200, 0.2],
    [lookups, 'GET', '/coupons/:code', 200, 1],
    [lookups, 'GET', '/coupons/:code', 404, 3.7],
    [lookups, 'GET', '/coupons/:code', 200, 12_000],
    [claims, 'POST', '/api/coupons/claim', 409, 42],
    [claims, 'POST', '/api/coupons/claim', 200, 250]
  ]
  for (const [observe, method, route, status, ms] of requests) {
    observe(status, ms)
    histogram.observe({ method, route, status_code: String(status) }, ms / 1000)
  }
  const expected = durationLines(await reference.metrics())
  const actual = durationLines(await ours.metrics())
  t.equal(expected.length, 4 * (BUCKETS.length + 3), 'four series of buckets, +Inf, sum and count to compare')
  t.same(actual, expected, 'line for line, in the same order')
  t.match(await ours.metrics(), '# TYPE http_request_duration_seconds histogram')

  ours.resetMetrics()
  t.ok(durationLines(await ours.metrics()).filter((line) => line.includes('_count')).every((line) => line.endsWith(' 0')), 'a registry reset zeroes every series')
})
