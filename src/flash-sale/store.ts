// The flash-sale store (DESIGN section 11): PostgreSQL is the truth for coupons, their stock and
// their claims. Used by the api in direct mode and by the flash-sale consumer. Every rule is kept by
// the database (constraints, one atomic statement or one locked transaction), never by reading in
// JavaScript and writing back.
import { fileURLToPath } from 'node:url'
import { runner } from 'node-pg-migrate'
import { DatabaseError, type Pool, type PoolClient } from 'pg'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import type { Logger } from '../shared/logger.js'
import type { ClaimOutcome, CouponSummary, CreateOutcome, FlashCoupon, GetOutcome } from './contract.js'

/** The numbered SQL migrations: `migrations/` at the top of the repository (and of the image). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url))
/** node-pg-migrate's table of applied migrations, in the same schema as the tables. */
export const MIGRATIONS_TABLE = 'pgmigrations'

/**
 * Applies the pending migrations to the pool's current schema (the first existing schema of its
 * search_path, `public` by default). Several processes may start at once: node-pg-migrate's
 * advisory lock makes the others wait (within the pool's statement timeout), then find nothing
 * left to do. Answers the names of the migrations it applied.
 */
export async function migrate (pool: Pool, logger: Logger): Promise<string[]> {
  const client = await connect(pool, 'migrating the flash-sale schema')
  try {
    const { rows } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema')
    const schema = rows[0].schema
    if (schema === null) throw new CouponsError('FLASH_SALE_STORE_FAILED', 'no schema of the search_path exists; create it before migrating')
    const log = logger.child({ component: 'migrations', schema })
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      schema,
      migrationsTable: MIGRATIONS_TABLE,
      direction: 'up',
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: 'wait',
      logger: {
        debug: (message: string) => log.debug(message),
        // "> Migrating files" and "No migrations to run!": the caller logs what was applied.
        info: (message: string) => log.debug(message),
        warn: (message: string) => log.warn(message),
        error: (message: string) => log.error(message)
      }
    })
    return applied.map((migration) => migration.name)
  } catch (err) {
    throw storeError(err, 'migrating the flash-sale schema', false)
  } finally {
    // The runner sets search_path on the session: never hand that connection to anyone else.
    client.release(true)
  }
}

const CREATE_COUPON = `
  INSERT INTO coupons (name, amount, remaining_amount) VALUES ($1, $2, $2)
  ON CONFLICT (name) DO NOTHING
  RETURNING name, amount, remaining_amount`

export async function createCoupon (pool: Pool, name: string, amount: number): Promise<CreateOutcome> {
  const { rows } = await run(pool, 'creating a coupon', async (client) => client.query<Omit<FlashCoupon, 'claimed_by'>>(CREATE_COUPON, [name, amount]))
  if (rows.length === 0) return { status: 'exists' }
  return { status: 'created', coupon: { ...rows[0], claimed_by: [] } }
}

// One statement, one snapshot: the stock and the claims it shows always agree.
const GET_COUPON = `
  SELECT c.name, c.amount, c.remaining_amount,
    coalesce((SELECT array_agg(cl.user_id ORDER BY cl.id) FROM claims cl WHERE cl.coupon_name = c.name), '{}') AS claimed_by
  FROM coupons c
  WHERE c.name = $1`

export async function getCoupon (pool: Pool, name: string): Promise<GetOutcome> {
  const { rows } = await run(pool, 'reading a coupon', async (client) => client.query<FlashCoupon>(GET_COUPON, [name]))
  return rows.length === 0 ? { status: 'not-found' } : { status: 'found', coupon: rows[0] }
}

// Keyset pagination by name: a page costs the same wherever it starts.
const LIST_COUPONS = `
  SELECT name, amount, remaining_amount, created_at FROM coupons
  WHERE $2::text IS NULL OR name > $2::text
  ORDER BY name
  LIMIT $1`

/** 42P01: the tables are not there yet (the flash-sale consumer migrates them when it first starts). */
const UNDEFINED_TABLE = '42P01'

/**
 * A page of coupons in name order, after the name `after` (for the operators' dashboard). No
 * coupon table yet (nothing was ever migrated) reads as no coupons.
 */
export async function listCoupons (pool: Pool, limit: number, after: string | null): Promise<CouponSummary[]> {
  try {
    const { rows } = await run(pool, 'listing coupons', async (client) => client.query<CouponSummary & { created_at: Date }>(LIST_COUPONS, [limit, after]))
    return rows.map((row) => ({ ...row, created_at: row.created_at.toISOString() }))
  } catch (err) {
    if (isCouponsError(err) && err.cause instanceof DatabaseError && err.cause.code === UNDEFINED_TABLE) return []
    throw err
  }
}

// One atomic statement. The coupon's row lock (FOR UPDATE) is taken first and serialises the
// claims of one coupon; under it the claim is inserted only while stock is left, ON CONFLICT keeps
// a user from claiming twice (a redelivered claim inserts nothing), and the stock goes down only
// when a claim was inserted. The CHECK constraint would refuse a negative stock anyway.
const CLAIM_COUPON = `
  WITH coupon AS (
    SELECT remaining_amount FROM coupons WHERE name = $1::text FOR UPDATE
  ), claimed AS (
    INSERT INTO claims (coupon_name, user_id)
    SELECT $1::text, $2::text FROM coupon WHERE remaining_amount > 0
    ON CONFLICT (user_id, coupon_name) DO NOTHING
    RETURNING id
  ), taken AS (
    UPDATE coupons SET remaining_amount = remaining_amount - 1
    WHERE name = $1::text AND EXISTS (SELECT 1 FROM claimed)
    RETURNING remaining_amount
  )
  SELECT
    (SELECT remaining_amount FROM coupon) AS remaining_before,
    EXISTS (SELECT 1 FROM claimed) AS claimed,
    EXISTS (SELECT 1 FROM claims WHERE coupon_name = $1::text AND user_id = $2::text) AS had_claim`

interface ClaimRow { remaining_before: number | null, claimed: boolean, had_claim: boolean }

export async function claimCoupon (pool: Pool, couponName: string, userId: string): Promise<ClaimOutcome> {
  const { rows } = await run(pool, 'claiming a coupon', async (client) => client.query<ClaimRow>(CLAIM_COUPON, [couponName, userId]))
  const { remaining_before: remaining, claimed, had_claim: hadClaim } = rows[0]
  if (remaining === null) return { status: 'not-found' }
  if (claimed) return { status: 'claimed' }
  // Stock was left yet nothing was inserted: ON CONFLICT met a claim committed after this
  // statement's snapshot was taken, so the user holds one.
  if (hadClaim || remaining > 0) return { status: 'already-claimed' }
  // No stock: the snapshot predates the lock wait, so a claim of this user committed meanwhile
  // (perhaps the one that took the last unit) is invisible to had_claim. A new statement sees it.
  const { rows: held } = await run(pool, 'claiming a coupon', async (client) => client.query(HOLDS_CLAIM, [couponName, userId]))
  return held.length > 0 ? { status: 'already-claimed' } : { status: 'sold-out' }
}

const HOLDS_CLAIM = 'SELECT 1 FROM claims WHERE coupon_name = $1 AND user_id = $2'

// A batch of one coupon's claims, in one transaction of four round trips (BEGIN, lock, claim,
// COMMIT) whatever the batch size. The lock comes first so that the claim statement's snapshot
// is taken under it: it sees every claim of the coupon, and stock is never refused to a user in
// the batch while some is left. Each user's first request in the batch is granted in order while
// stock lasts; a repeat in the batch, or a user who already holds a claim, gets already-claimed.
const LOCK_COUPON = 'SELECT remaining_amount FROM coupons WHERE name = $1 FOR UPDATE'

const CLAIM_BATCH = `
  WITH input AS (
    SELECT user_id, ord FROM unnest($2::text[]) WITH ORDINALITY AS input (user_id, ord)
  ), fresh AS (
    SELECT DISTINCT ON (user_id) user_id, ord FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM claims c WHERE c.coupon_name = $1::text AND c.user_id = i.user_id)
    ORDER BY user_id, ord
  ), granted AS (
    SELECT user_id, ord FROM fresh
    ORDER BY ord
    LIMIT (SELECT remaining_amount FROM coupons WHERE name = $1::text)
  ), claimed AS (
    INSERT INTO claims (coupon_name, user_id)
    SELECT $1::text, user_id FROM granted ORDER BY ord
    ON CONFLICT (user_id, coupon_name) DO NOTHING
    RETURNING user_id
  ), taken AS (
    UPDATE coupons SET remaining_amount = remaining_amount - (SELECT count(*) FROM claimed)
    WHERE name = $1::text AND EXISTS (SELECT 1 FROM claimed)
    RETURNING remaining_amount
  )
  SELECT CASE
    WHEN f.user_id IS NULL THEN 'already-claimed'
    WHEN g.user_id IS NULL THEN 'sold-out'
    WHEN c.user_id IS NOT NULL AND g.ord = i.ord THEN 'claimed'
    ELSE 'already-claimed'
  END AS status
  FROM input i
  LEFT JOIN fresh f ON f.user_id = i.user_id
  LEFT JOIN granted g ON g.user_id = i.user_id
  LEFT JOIN claimed c ON c.user_id = i.user_id
  ORDER BY i.ord`

/**
 * Applies a batch of claims of one coupon and answers each user's outcome, in the order given.
 * Atomic: on an error nothing of the batch is applied, unless the error is FLASH_SALE_OUTCOME_UNKNOWN
 * (the COMMIT was sent and no answer came back). Running the same batch again is harmless.
 */
export async function claimCoupons (pool: Pool, couponName: string, userIds: readonly string[]): Promise<ClaimOutcome[]> {
  if (userIds.length === 0) return []
  const client = await connect(pool, 'claiming coupons')
  let committing = false
  let failed: unknown
  try {
    await client.query('BEGIN')
    const locked = await client.query(LOCK_COUPON, [couponName])
    if (locked.rowCount === 0) {
      await client.query('ROLLBACK')
      return userIds.map(() => ({ status: 'not-found' }))
    }
    const { rows } = await client.query<{ status: ClaimOutcome['status'] }>(CLAIM_BATCH, [couponName, userIds])
    committing = true
    await client.query('COMMIT')
    return rows.map(({ status }) => ({ status }))
  } catch (err) {
    failed = err
    if (!committing && isAlive(err)) await client.query('ROLLBACK').catch(() => {})
    throw storeError(err, 'claiming coupons', committing)
  } finally {
    client.release(!isAlive(failed))
  }
}

// --- connections and errors --------------------------------------------------------------------

async function connect (pool: Pool, what: string): Promise<PoolClient> {
  try {
    return await pool.connect()
  } catch (err) {
    throw storeError(err, what, false)
  }
}

/** Runs one autocommit statement on a pooled connection: once it is sent, a lost connection leaves its outcome unknown. */
async function run<T> (pool: Pool, what: string, statement: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await connect(pool, what)
  let failed: unknown
  try {
    return await statement(client)
  } catch (err) {
    failed = err
    throw storeError(err, what, true)
  } finally {
    client.release(!isAlive(failed))
  }
}

// The server refused the work for now; its transaction is rolled back, so trying again is safe.
// 40001 serialization failure, 40P01 deadlock, 55P03 lock not available, 57014 statement timeout,
// 57P03 cannot connect now, class 53 insufficient resources (too many connections, disk full).
const TRANSIENT = /^(40001|40P01|55P03|57014|57P03|53...)$/
// The connection is gone (class 08, administrator or crash shutdown): a statement in flight may
// have committed.
const CONNECTION_LOST = /^(08...|57P01|57P02)$/

/** Whether the connection can still be used after this error (no error, or the server's answer to a statement). */
function isAlive (err: unknown): boolean {
  return err === undefined || (err instanceof DatabaseError && err.code !== undefined && !CONNECTION_LOST.test(err.code))
}

/**
 * Turns a failure into a CouponsError: FLASH_SALE_UNAVAILABLE when the work was surely not applied
 * and a retry may help, FLASH_SALE_OUTCOME_UNKNOWN when the connection failed after the statement
 * (or COMMIT) that applies it was sent, FLASH_SALE_STORE_FAILED when a retry cannot help.
 */
export function storeError (err: unknown, what: string, sent: boolean): CouponsError {
  if (isCouponsError(err)) return err
  const sqlState = err instanceof DatabaseError ? err.code : undefined
  if (sqlState !== undefined && !CONNECTION_LOST.test(sqlState)) {
    return TRANSIENT.test(sqlState)
      ? new CouponsError('FLASH_SALE_UNAVAILABLE', `${what}: PostgreSQL refused it for now (SQLSTATE ${sqlState})`, { cause: err, retriable: true })
      : new CouponsError('FLASH_SALE_STORE_FAILED', `${what} failed (SQLSTATE ${sqlState})`, { cause: err, retriable: false })
  }
  return sent
    ? new CouponsError('FLASH_SALE_OUTCOME_UNKNOWN', `${what}: the PostgreSQL connection failed after the statement was sent; it may have been applied`, { cause: err, retriable: true })
    : new CouponsError('FLASH_SALE_UNAVAILABLE', `${what}: PostgreSQL is unavailable`, { cause: err, retriable: true })
}
