// The /metrics server of the roles without an HTTP api.
import t from 'tap'
import { Counter } from 'prom-client'
import { createRegistry } from '../../src/shared/metrics.js'
import { startMetricsServer, withMetricsServer } from '../../src/shared/metrics-server.js'
import { freePort } from '../helpers/api-env.js'
import { sampleValue } from '../helpers/metrics-text.js'
import { silentLogger, testConfig } from '../helpers/test-env.js'

const TOKEN = 'test-metrics-token-0123456789abcdef'

function registryWithCounter (count: number) {
  const registry = createRegistry('test-role', { processMetrics: false })
  new Counter({ name: 'test_things_total', help: 'things', registers: [registry] }).inc(count)
  return registry
}

t.test('serves the registry at /metrics to a scrape with METRICS_TOKEN, and 401, 404 or 405 otherwise', async (t) => {
  const server = await startMetricsServer({ registry: registryWithCounter(7), access: { metricsToken: TOKEN, metricsPublic: false }, port: 0, host: '127.0.0.1', logger: silentLogger })
  t.teardown(server.close)
  const ok = await fetch(server.url, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(ok.status, 200)
  t.match(ok.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await ok.text()
  t.equal(sampleValue(text, 'test_things_total', { role: 'test-role' }), 7)

  for (const [label, headers] of [['no header', {}], ['a wrong token', { authorization: 'Bearer wrong-token-wrong-token-wrong' }]] as const) {
    const refused = await fetch(server.url, { headers })
    t.equal(refused.status, 401, label)
    t.equal(refused.headers.get('www-authenticate'), 'Bearer realm="coupons-metrics"')
    t.notMatch(await refused.text(), /test_things_total/)
  }
  t.equal((await fetch(server.url.replace('/metrics', '/other'), { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404)
  t.equal((await fetch(server.url, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 405)
})

t.test('without a token it refuses every scrape, unless METRICS_PUBLIC', async (t) => {
  const closed = await startMetricsServer({ registry: registryWithCounter(1), access: { metricsToken: undefined, metricsPublic: false }, port: 0, host: '127.0.0.1', logger: silentLogger })
  t.teardown(closed.close)
  t.equal((await fetch(closed.url)).status, 401)
  t.equal((await fetch(closed.url, { headers: { authorization: 'Bearer undefined' } })).status, 401)
  const open = await startMetricsServer({ registry: registryWithCounter(1), access: { metricsToken: undefined, metricsPublic: true }, port: 0, host: '127.0.0.1', logger: silentLogger })
  t.teardown(open.close)
  t.equal((await fetch(open.url)).status, 200)
})

t.test('withMetricsServer: nothing without METRICS_PORT; with it, a server after the start and closed before the service', async (t) => {
  const calls: string[] = []
  const service = { start: async () => { calls.push('start') }, close: async () => { calls.push('close') } }
  t.equal(withMetricsServer(service, { config: testConfig('metrics-off'), registry: registryWithCounter(1), logger: silentLogger }), service, 'METRICS_PORT=0: the service itself')

  const port = await freePort()
  const wrapped = withMetricsServer(service, { config: testConfig('metrics-on', { METRICS_PORT: String(port), METRICS_PUBLIC: 'true' }), registry: registryWithCounter(3), logger: silentLogger })
  await wrapped.start?.()
  t.same(calls, ['start'])
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  t.equal(sampleValue(text, 'test_things_total'), 3)
  await wrapped.close()
  t.same(calls, ['start', 'close'])
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'the port is closed')
})
