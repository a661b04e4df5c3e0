// Readiness step for infra/infra.sh: waits until the PostgreSQL on 127.0.0.1 accepts the project's
// user, then creates the project's database (DATABASE_URL's, `coupons` by default) when missing.
// The tables themselves are made by the migrations when the api or the consumer starts.
import { Client, escapeIdentifier } from 'pg'
import { loadConfig } from '../src/shared/config.js'

const [portArg = '5432', timeoutArg = '30'] = process.argv.slice(2)
const deadline = Date.now() + Number(timeoutArg) * 1000

// The database and user of DATABASE_URL when it names this machine's server, else the default's.
const defaultUrl = new URL(loadConfig({}).databaseUrl)
const envUrl = process.env.DATABASE_URL === undefined ? null : new URL(process.env.DATABASE_URL)
const local = envUrl !== null && ['127.0.0.1', 'localhost'].includes(envUrl.hostname) && (envUrl.port || '5432') === portArg
const url = local ? envUrl : defaultUrl
const database = decodeURIComponent(url.pathname.slice(1))
const user = decodeURIComponent(url.username) || 'postgres'
const password = url.password === '' ? undefined : decodeURIComponent(url.password)

async function ensureDatabase (): Promise<'created' | 'exists'> {
  const client = new Client({ host: '127.0.0.1', port: Number(portArg), user, password, database: 'postgres', connectionTimeoutMillis: 2000 })
  await client.connect()
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])
    if (rowCount !== 0) return 'exists'
    try {
      await client.query(`CREATE DATABASE ${escapeIdentifier(database)}`)
    } catch (err) {
      // Another checkout's infra:up created it at the same time.
      if ((err as { code?: string }).code === '42P04') return 'exists'
      throw err
    }
    return 'created'
  } finally {
    await client.end().catch(() => {})
  }
}

for (;;) {
  try {
    const result = await ensureDatabase()
    console.log(`infra: postgresql database "${database}" ${result === 'created' ? 'created' : 'exists'}`)
    process.exit(0)
  } catch (err) {
    const { code, message } = err as { code?: string, message: string }
    // A refused login or a missing role does not fix itself: say so at once.
    const final = code === '28P01' || code === '28000' || Date.now() > deadline
    if (final) {
      const hint = code?.startsWith('28') === true
        ? ` (allow user "${user}" from 127.0.0.1 in pg_hba.conf, e.g. "host all all 127.0.0.1/32 trust" on a development machine, or put its password in DATABASE_URL)`
        : ''
      console.error(`infra: postgresql on 127.0.0.1:${portArg} is not usable as user "${user}": ${message}${hint}`)
      process.exit(1)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}
