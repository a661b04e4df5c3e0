import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { ADMIN_TOKEN, freePort, publishSet, testApp, ThrowawayRedis } from '../../helpers/api-env.js'
import { testSchema } from '../../helpers/postgres-env.js'
import { META, redisKeys } from '../../../src/shared/redis-keys.js'
import { deleteTopics, testKafka } from '../../helpers/test-env.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

const ROUTES = [
  { method: 'POST', url: '/admin/ingest', payload: { files: ['couponbase1.gz'] } },
  { method: 'GET', url: '/admin/runs' },
  { method: 'GET', url: '/admin/runs/20250101T000000000Z-00000000' },
  { method: 'GET', url: '/admin/status' }
] as const
/** Every admin route: the ones above use Redis, this one PostgreSQL. */
const ALL_ROUTES = [...ROUTES, { method: 'GET', url: '/admin/flash-sale/coupons' }] as const

t.test('missing, wrong and almost-right tokens get 401 on every admin route', async (t) => {
  const { app } = await testApp(t)
  const headers: Array<[string, Record<string, string>]> = [
    ['no header', {}],
    ['empty header', { authorization: '' }],
    ['scheme only', { authorization: 'Bearer' }],
    ['scheme and a space', { authorization: 'Bearer ' }],
    ['token without scheme', { authorization: ADMIN_TOKEN }],
    ['Basic scheme', { authorization: `Basic ${ADMIN_TOKEN}` }],
    ['wrong token', { authorization: 'Bearer not-the-admin-token-at-all' }],
    ['last character changed', { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}0` }],
    ['one character short', { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` }],
    ['one character more', { authorization: `Bearer ${ADMIN_TOKEN}x` }],
    ['a prefix of the token', { authorization: `Bearer ${ADMIN_TOKEN.slice(0, 8)}` }],
    ['different case', { authorization: `Bearer ${ADMIN_TOKEN.toUpperCase()}` }],
    ['two tokens', { authorization: `Bearer ${ADMIN_TOKEN} ${ADMIN_TOKEN}` }]
  ]
  for (const route of ALL_ROUTES) {
    for (const [label, header] of headers) {
      const res = await app.inject({ ...route, headers: header })
      t.equal(res.statusCode, 401, `${route.method} ${route.url}: ${label}`)
      t.equal(res.headers['www-authenticate'], 'Bearer realm="coupons-admin"')
      t.same(res.json(), { statusCode: 401, error: 'Unauthorized', message: 'a valid admin bearer token is required' })
    }
  }
})

t.test('without ADMIN_TOKEN every admin request is refused and a warning is logged at start', async (t) => {
  const lines: string[] = []
  const logger = pino({ level: 'warn' }, new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } }))
  const { app } = await testApp(t, { ADMIN_TOKEN: undefined }, { logger })
  t.ok(lines.some((line) => /ADMIN_TOKEN is not set/.test(line)), 'warns at start')
  for (const route of ALL_ROUTES) {
    for (const authorization of [`Bearer ${ADMIN_TOKEN}`, 'Bearer ', 'Bearer undefined', 'Bearer null', '']) {
      const res = await app.inject({ ...route, headers: { authorization } })
      t.equal(res.statusCode, 401, `${route.method} ${route.url} with "${authorization}"`)
    }
  }
})

t.test('POST /admin/ingest refuses names outside the configured list with 400', async (t) => {
  const { app, config } = await testApp(t)
  t.teardown(() => deleteTopics(testKafka(config), config.kafkaTopicPrefix))
  const bodies: Array<[string, unknown]> = [
    ['an unknown name', { files: ['couponbase4.gz'] }],
    ['a relative path', { files: ['../couponbase1.gz'] }],
    ['a path inside the data folder', { files: ['./couponbase1.gz'] }],
    ['an absolute path', { files: ['/etc/passwd'] }],
    ['a known and an unknown name', { files: ['couponbase1.gz', 'couponbase9.gz'] }],
    ['a name twice', { files: ['couponbase1.gz', 'couponbase1.gz'] }],
    ['an empty list', { files: [] }],
    ['an empty name', { files: [''] }],
    ['not strings', { files: [1] }]
  ]
  for (const [label, payload] of bodies) {
    const res = await app.inject({ method: 'POST', url: '/admin/ingest', headers: auth, payload: payload as object })
    t.equal(res.statusCode, 400, label)
    t.equal(res.json().statusCode, 400, `${label}: JSON error body`)
  }
  const unknown = await app.inject({ method: 'POST', url: '/admin/ingest', headers: auth, payload: { files: ['couponbase4.gz'] } })
  t.match(unknown.json().message, /unknown file "couponbase4.gz"; the configured files are couponbase1.gz, couponbase2.gz, couponbase3.gz/)
})

t.test('a run started through the API is queued, listed and followed file by file', async (t) => {
  const { app, config } = await testApp(t)
  t.teardown(() => deleteTopics(testKafka(config), config.kafkaTopicPrefix))

  const started = await app.inject({ method: 'POST', url: '/admin/ingest', headers: auth, payload: { files: ['couponbase3.gz', 'couponbase1.gz'] } })
  t.equal(started.statusCode, 202, started.body)
  const { runId, jobs } = started.json()
  t.match(runId, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/, 'a time-sortable run id')
  t.same(jobs, [
    { id: `${runId}.couponbase1.gz`, file: 'couponbase1.gz' },
    { id: `${runId}.couponbase3.gz`, file: 'couponbase3.gz' }
  ], 'one job per file, in the configured order')

  const all = await app.inject({ method: 'POST', url: '/admin/ingest', headers: auth })
  t.equal(all.statusCode, 202, 'no body means every configured file')
  t.same(all.json().jobs.map((job: { file: string }) => job.file), config.couponFiles)

  const run = await app.inject({ method: 'GET', url: `/admin/runs/${runId}`, headers: auth })
  t.equal(run.statusCode, 200)
  const view = run.json()
  t.equal(view.runId, runId)
  t.equal(view.source, 'admin')
  // No worker runs in this test: the flow's parent waits for its children, which wait in the queue.
  t.equal(view.state, 'waiting-children')
  t.same(view.files, jobs.map((job: { id: string, file: string }) => ({
    file: job.file, jobId: job.id, state: 'waiting', progress: null, attemptsMade: 0, failedReason: null, segmentId: null, appliedSegmentId: null, attempts: []
  })))
  t.equal(view.result, null, 'no swap yet')

  const list = await app.inject({ method: 'GET', url: '/admin/runs', headers: auth })
  t.equal(list.statusCode, 200)
  t.same(list.json().runs.map((r: { runId: string }) => r.runId), [all.json().runId, runId], 'newest first')
  const limited = await app.inject({ method: 'GET', url: '/admin/runs?limit=1', headers: auth })
  t.equal(limited.json().runs.length, 1)
  t.equal((await app.inject({ method: 'GET', url: '/admin/runs?limit=0', headers: auth })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/admin/runs?limit=many', headers: auth })).statusCode, 400)

  const status = await app.inject({ method: 'GET', url: '/admin/status', headers: auth })
  t.equal(status.statusCode, 200)
  t.same(status.json().queue, { active: 0, waiting: 5, prioritized: 0, delayed: 0, completed: 0, failed: 0 }, 'the five file jobs of the two runs wait')
})

t.test('a partial run under a KAFKA_PARTITIONS other than the live set\'s is refused with 409; a full run is not', async (t) => {
  const { app, config, redis } = await testApp(t)
  t.teardown(() => deleteTopics(testKafka(config), config.kafkaTopicPrefix))
  t.equal(config.kafkaPartitions, 4)
  const meta = redisKeys(config.redisPrefix).meta
  const partial = { method: 'POST', url: '/admin/ingest', headers: auth, payload: { files: ['couponbase2.gz'] } } as const

  t.equal((await app.inject(partial)).statusCode, 202, 'no partition count in the meta hash (unknown): allowed')
  await redis.hset(meta, META.partitions, '4')
  t.equal((await app.inject(partial)).statusCode, 202, 'the same count as the live set: allowed')

  await redis.hset(meta, META.partitions, '8')
  const refused = await app.inject(partial)
  t.equal(refused.statusCode, 409)
  t.same(refused.json(), {
    statusCode: 409,
    error: 'Conflict',
    code: 'INGEST_PARTITIONS_CHANGED',
    message: 'KAFKA_PARTITIONS is 4 but the live set was built from segments with 8 partitions; ' +
      'run a full ingest (all files: couponbase1.gz, couponbase2.gz, couponbase3.gz) to re-partition, not only couponbase2.gz'
  }, 'naming both counts and what to do')

  const full = await app.inject({ method: 'POST', url: '/admin/ingest', headers: auth, payload: { files: [...config.couponFiles].reverse() } })
  t.equal(full.statusCode, 202, 'a run of every file re-partitions them all: allowed')
  t.equal((await app.inject({ method: 'POST', url: '/admin/ingest', headers: auth })).statusCode, 202, 'and so is the default run')
  const runs = (await app.inject({ method: 'GET', url: '/admin/runs', headers: auth })).json().runs
  t.equal(runs.length, 4, 'the refused run was never queued')
})

t.test('GET /admin/runs/:runId is 404 for an unknown run and 400 for a malformed id', async (t) => {
  const { app } = await testApp(t)
  const unknown = await app.inject({ method: 'GET', url: '/admin/runs/20200101T000000000Z-deadbeef', headers: auth })
  t.equal(unknown.statusCode, 404)
  t.same(unknown.json(), { statusCode: 404, error: 'Not Found', message: 'no such run' })
  t.equal((await app.inject({ method: 'GET', url: '/admin/runs/a%20b', headers: auth })).statusCode, 400)
})

t.test('GET /admin/status shows the live set and the daily schedule', async (t) => {
  const { app, config, redis } = await testApp(t, { INGEST_CRON: '0 3 * * *', INGEST_TZ: 'Europe/Paris' })
  await app.ingestRuns.init()

  const before = await app.inject({ method: 'GET', url: '/admin/status', headers: auth })
  t.equal(before.statusCode, 200)
  t.match(before.json(), { lastSwapAt: null, generation: null, validCount: null, swapMs: null })
  t.same(before.json().files, config.couponFiles, 'the configured files, for the dashboard to choose from')

  await publishSet(redis, config.redisPrefix, ['HAPPYHRS', 'FIFTYOFF'], '20250101T030000000Z-0a0b0c0d')
  const after = (await app.inject({ method: 'GET', url: '/admin/status', headers: auth })).json()
  t.equal(after.generation, '20250101T030000000Z-0a0b0c0d')
  t.equal(after.validCount, 2)
  t.equal(after.swapMs, 1)
  t.ok(Date.parse(after.lastSwapAt) > 0, 'lastSwapAt is a date')
  t.equal(after.schedule.pattern, '0 3 * * *')
  t.equal(after.schedule.tz, 'Europe/Paris')
  t.ok(Date.parse(after.schedule.next) > Date.now(), 'the next run is in the future')
  t.same(after.queue, { active: 0, waiting: 0, prioritized: 0, delayed: 0, completed: 0, failed: 0 }, 'no file job yet')
})

t.test('admin routes answer 503 with Retry-After when Redis is down', async (t) => {
  const server = new ThrowawayRedis(await freePort())
  await server.start()
  t.teardown(() => server.stop())
  // A slow health check, so the routes' own handling is what answers (not the load shedder).
  const { app, config } = await testApp(t, { REDIS_URL: server.url }, { healthCheckIntervalMs: 60_000, dependencyTimeoutMs: 1000 })
  t.teardown(() => deleteTopics(testKafka(config), config.kafkaTopicPrefix))
  await server.stop()
  for (const route of ROUTES) {
    const res = await app.inject({ ...route, headers: auth })
    t.equal(res.statusCode, 503, `${route.method} ${route.url}`)
    t.equal(res.headers['retry-after'], '5', 'has Retry-After')
    t.equal(res.json().error, 'Service Unavailable')
    t.notMatch(res.body, /ECONNREFUSED|Stream|ioredis|at /, 'no internals')
  }
})

t.test('GET /admin/flash-sale/coupons lists the coupons with their stock, a page at a time in name order', async (t) => {
  const { pool, databaseUrl } = await testSchema(t)
  const { app } = await testApp(t, { DATABASE_URL: databaseUrl })
  const list = async (query: string) => {
    const res = await app.inject({ method: 'GET', url: `/admin/flash-sale/coupons${query}`, headers: auth })
    t.equal(res.statusCode, 200, query)
    return res.json()
  }
  t.same(await list(''), { coupons: [], next: null }, 'none yet')

  for (const [name, amount] of [['PROMO_B', 10], ['PROMO_A', 5], ['PROMO_C', 1]] as const) {
    await pool.query('INSERT INTO coupons (name, amount, remaining_amount) VALUES ($1, $2, $2)', [name, amount])
  }
  await pool.query("UPDATE coupons SET remaining_amount = 3 WHERE name = 'PROMO_B'")
  const all = await list('')
  t.same(all.coupons.map(({ created_at: createdAt, ...rest }: { created_at: string }) => { t.ok(Date.parse(createdAt) > 0); return rest }), [
    { name: 'PROMO_A', amount: 5, remaining_amount: 5 },
    { name: 'PROMO_B', amount: 10, remaining_amount: 3 },
    { name: 'PROMO_C', amount: 1, remaining_amount: 1 }
  ])
  t.equal(all.next, null, 'one page holds them all')

  const first = await list('?limit=2')
  t.same(first.coupons.map((c: { name: string }) => c.name), ['PROMO_A', 'PROMO_B'])
  t.equal(first.next, 'PROMO_B')
  const second = await list(`?limit=2&after=${first.next}`)
  t.same(second.coupons.map((c: { name: string }) => c.name), ['PROMO_C'])
  t.equal(second.next, null)
  for (const query of ['?limit=0', '?limit=201', '?after=a%20b']) {
    t.equal((await app.inject({ method: 'GET', url: `/admin/flash-sale/coupons${query}`, headers: auth })).statusCode, 400, query)
  }
})

t.test('GET /admin/flash-sale/coupons is an empty list before the flash-sale tables exist, and 503 when PostgreSQL is down', async (t) => {
  const { databaseUrl } = await testSchema(t, { migrated: false })
  const { app } = await testApp(t, { DATABASE_URL: databaseUrl })
  const res = await app.inject({ method: 'GET', url: '/admin/flash-sale/coupons', headers: auth })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { coupons: [], next: null })

  const down = (await testApp(t, { DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/coupons` })).app
  const refused = await down.inject({ method: 'GET', url: '/admin/flash-sale/coupons', headers: auth })
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '5')
  t.notMatch(refused.body, /ECONNREFUSED|at /, 'no internals')
})
