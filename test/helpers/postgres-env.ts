// Isolation for tests against the real PostgreSQL: every test gets a fresh schema of its own in
// the project's database, migrated like production, reached through search_path, and dropped after.
import { escapeIdentifier, Pool } from 'pg'
import { migrate } from '../../src/flash-sale/store.js'
import { loadConfig } from '../../src/shared/config.js'
import { createPool } from '../../src/shared/postgres.js'
import { silentLogger, uniqueName } from './test-env.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** Where the tests' PostgreSQL is: DATABASE_URL when set, else the config's default (what infra:up makes). */
export const TEST_DATABASE_URL = process.env.DATABASE_URL ?? loadConfig({}).databaseUrl

export interface TestSchema {
  /** a pool whose connections use the schema */
  pool: Pool
  schema: string
  /** DATABASE_URL whose connections use the schema (and are named after it), for code that makes its own pool (the app) */
  databaseUrl: string
}

/** A fresh schema, migrated unless told otherwise; dropped with everything in it when the test ends. */
export async function testSchema (t: Teardown, { migrated = true }: { migrated?: boolean } = {}): Promise<TestSchema> {
  const schema = uniqueName('flash').replaceAll('-', '_')
  const admin = new Pool({ connectionString: TEST_DATABASE_URL, max: 1 })
  await admin.query(`CREATE SCHEMA ${escapeIdentifier(schema)}`)
  const pool = createPool(TEST_DATABASE_URL, 'test', silentLogger, {
    options: `-c search_path=${schema}`,
    // Named after the schema: a test can find its own backends in pg_stat_activity.
    application_name: schema,
    max: 20,
    // The concurrency tests queue a thousand claims on the pool.
    connectionTimeoutMillis: 30_000
  })
  t.teardown(async () => {
    await pool.end().catch(() => {})
    try {
      await admin.query(`DROP SCHEMA ${escapeIdentifier(schema)} CASCADE`)
    } finally {
      await admin.end()
    }
  })
  if (migrated) await migrate(pool, silentLogger)
  const url = new URL(TEST_DATABASE_URL)
  url.searchParams.set('options', `-c search_path=${schema}`)
  url.searchParams.set('application_name', schema)
  return { pool, schema, databaseUrl: url.toString() }
}
