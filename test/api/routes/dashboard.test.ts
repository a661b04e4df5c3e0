import { readFile } from 'node:fs/promises'
import t from 'tap'
import { DASHBOARD_DIR } from '../../../src/api/routes/dashboard.js'
import { ADMIN_TOKEN, freePort, testApp } from '../../helpers/api-env.js'

t.test('GET /dashboard sends the browser to the page, which is served with its own files only', async (t) => {
  const { app } = await testApp(t)
  const redirect = await app.inject({ url: '/dashboard' })
  t.equal(redirect.statusCode, 302)
  t.equal(redirect.headers.location, '/dashboard/')

  const page = await app.inject({ url: '/dashboard/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.headers['content-security-policy'], /default-src 'none'; script-src 'self'; style-src 'self'/, 'nothing but its own scripts and styles')
  t.match(page.headers['content-security-policy'], /frame-ancestors 'none'/, 'never framed')
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.equal(page.body, await readFile(`${DASHBOARD_DIR}index.html`, 'utf8'))
  t.notMatch(page.body, ADMIN_TOKEN, 'no secret in the page')
  t.notMatch(page.body, /https?:\/\//, 'no asset from elsewhere (no CDN)')
  t.match(page.body, /<label for="token">Admin token<\/label>/, 'the token field has a label')

  for (const [file, type] of [['dashboard.js', /javascript/], ['dashboard.css', /^text\/css/]] as const) {
    const res = await app.inject({ url: `/dashboard/${file}` })
    t.equal(res.statusCode, 200, file)
    t.match(res.headers['content-type'], type)
    t.notMatch(res.body, /https?:\/\//, `${file} loads nothing from elsewhere`)
  }
})

t.test('nothing else is served under /dashboard/, and the page is not in the OpenAPI document', async (t) => {
  const { app } = await testApp(t)
  for (const url of ['/dashboard/nope.js', '/dashboard/../package.json', '/dashboard/%2e%2e/%2e%2e/package.json', '/dashboard/.env']) {
    t.equal((await app.inject({ url })).statusCode, 404, url)
  }
  const paths = Object.keys((await app.inject({ url: '/docs/json' })).json().paths)
  t.notOk(paths.some((path) => path.startsWith('/dashboard') || path === '/metrics'), 'neither /dashboard nor /metrics is a JSON route of the document')
})

t.test('the page still loads while Redis is down (the load shedder lets it through)', async (t) => {
  const { app } = await testApp(t, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` }, { redisConnectWaitMs: 100, dependencyTimeoutMs: 300 })
  t.equal((await app.inject({ url: '/health' })).statusCode, 503, 'the health check fails')
  for (const url of ['/dashboard', '/dashboard/', '/dashboard/dashboard.js']) {
    t.equal((await app.inject({ url })).statusCode < 400, true, url)
  }
  t.equal((await app.inject({ url: '/admin/status', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode, 503, 'while its data is unavailable')
})
