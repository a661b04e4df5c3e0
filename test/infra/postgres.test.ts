// The PostgreSQL part of infra/infra.sh, against the machine's running server: the database step
// is idempotent, and `down` leaves alone a PostgreSQL the script did not start. Each run uses its
// own data folder (COUPONS_INFRA_DATA), so it never sees the checkout's pid files.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { escapeIdentifier, Pool } from 'pg'
import t from 'tap'
import { TEST_DATABASE_URL } from '../helpers/postgres-env.js'
import { uniqueName } from '../helpers/test-env.js'

const run = promisify(execFile)
const ROOT = new URL('../../', import.meta.url).pathname

async function infra (t: { teardown: (fn: () => unknown) => void }, args: string[], env: NodeJS.ProcessEnv = {}) {
  const data = await mkdtemp(join(tmpdir(), 'infra-pg-'))
  t.teardown(() => rm(data, { recursive: true, force: true }))
  return { data, run: async (more: NodeJS.ProcessEnv = {}) => run('bash', ['infra/infra.sh', ...args], { cwd: ROOT, env: { ...process.env, ...env, ...more, COUPONS_INFRA_DATA: data } }) }
}

t.test('the database step creates DATABASE_URL\'s database once, then finds it', async (t) => {
  const database = uniqueName('infra').replaceAll('-', '_')
  const url = new URL(TEST_DATABASE_URL)
  url.pathname = `/${database}`
  const admin = new Pool({ connectionString: TEST_DATABASE_URL, max: 1 })
  t.teardown(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(database)}`)
    await admin.end()
  })
  const step = async () => run(process.execPath, ['--import=tsx', 'infra/postgres-ready.ts', '5432', '10'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url.toString() } })
  t.match((await step()).stdout, `postgresql database "${database}" created`)
  t.match((await step()).stdout, `postgresql database "${database}" exists`)
  const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])
  t.equal(rowCount, 1)
})

t.test('status sees the running PostgreSQL, and down leaves alone one it did not start', async (t) => {
  const status = await infra(t, ['status'])
  t.match((await status.run()).stdout, /postgresql answers on 127\.0\.0\.1:5432\n/)

  const down = await infra(t, ['down', 'postgres'])
  // A stale record naming a process that is not the running server's postmaster counts for nothing.
  await writeFile(join(down.data, 'postgres.started'), '15 999999999\n')
  const { stdout } = await down.run()
  t.notMatch(stdout, /stopping/)
  t.match((await status.run()).stdout, /postgresql answers on 127\.0\.0\.1:5432\n/, 'still running')
})

t.test('usage names the postgres part', async (t) => {
  const bad = await infra(t, ['down', 'mysql'])
  const failed = await bad.run().then(() => null, (err: { stderr: string }) => err)
  t.match(failed?.stderr, /usage: infra\/infra\.sh down \[kafka\|redis\|postgres\]/)
})
