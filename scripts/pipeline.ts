// The launcher behind `npm start` (after scripts/start.sh has started Kafka, Redis and PostgreSQL):
// sample data when the data folder has no coupon files, the api (with its embedded ingest worker),
// the aggregator and the flash-sale consumer as separate processes, a first run, and the URLs to try.
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateCoupons } from '../src/gen/generate-coupons.js'
import { loadConfig } from '../src/shared/config.js'
import { startRole, type RoleProcess } from './lib/role-process.js'
import { waitFor } from './lib/wait-for.js'

const SAMPLE_SCALE = Number(process.env.SAMPLE_SCALE ?? '0.001')

/** The admin token: the configured one, else one made once and kept in .data/ across restarts. */
async function adminToken (): Promise<string> {
  if (process.env.ADMIN_TOKEN !== undefined) return process.env.ADMIN_TOKEN
  const path = '.data/admin-token'
  if (existsSync(path)) return (await readFile(path, 'utf8')).trim()
  const token = randomBytes(24).toString('base64url')
  await mkdir('.data', { recursive: true })
  await writeFile(path, token + '\n', { mode: 0o600 })
  return token
}

const token = await adminToken()
const env = { ...process.env, ADMIN_TOKEN: token }
const config = loadConfig(env)
const base = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${config.port}`
const auth = { authorization: `Bearer ${token}` }

const present = config.couponFiles.filter((file) => existsSync(join(config.couponDataDir, file)))
if (present.length === 0) {
  console.log(`no coupon files in ${config.couponDataDir}: generating sample files (scale ${SAMPLE_SCALE})`)
  const key = await generateCoupons({ outDir: config.couponDataDir, scale: SAMPLE_SCALE, seed: 1 })
  console.log(`sample data: ${key.valid.length} valid codes; the answer key is ${join(config.couponDataDir, 'answers.json')}`)
} else if (present.length < config.couponFiles.length) {
  const missing = config.couponFiles.filter((file) => !present.includes(file))
  console.error(`${config.couponDataDir} holds ${present.join(', ')} but not ${missing.join(', ')}: add them, or empty the folder for sample data`)
  process.exit(1)
} else {
  console.log(`using the coupon files in ${config.couponDataDir}: ${present.join(', ')}`)
}

// The flash-sale consumer applies the api's flash-sale requests (EVENT_DRIVEN_ENABLED, the default).
const roles: RoleProcess[] = [
  startRole('aggregator', [], env),
  ...(config.eventDrivenEnabled ? [startRole('flash-sale', [], env)] : []),
  startRole('api', [], env)
]
let stopping = false
async function stopAll (): Promise<void> {
  if (stopping) return
  stopping = true
  await Promise.all(roles.map((role) => role.stop()))
}
process.on('SIGINT', () => { stopAll().catch(console.error) })
process.on('SIGTERM', () => { stopAll().catch(console.error) })
for (const role of roles) {
  role.exited.then((code) => {
    if (stopping) return
    console.error(`${role.role} exited unexpectedly (${code}); stopping the pipeline`)
    process.exitCode = 1
    stopAll().catch(console.error)
  }, console.error)
}

try {
  await waitFor('the api to answer /health', async () => ((await fetch(`${base}/health`)).ok ? true : undefined), 60_000)
  const response = await fetch(`${base}/admin/ingest`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' })
  if (response.status !== 202) throw new Error(`POST /admin/ingest answered ${response.status}: ${await response.text()}`)
  const { runId } = await response.json() as { runId: string }
  console.log(`
  api         ${base}
  docs        ${base}/docs
  try         curl -i ${base}/coupons/HAPPYHRS
  flash sale  curl -i -H 'content-type: application/json' -d '{"name":"PROMO","amount":100}' ${base}/api/coupons
              curl -i -H 'content-type: application/json' -d '{"user_id":"u1","coupon_name":"PROMO"}' ${base}/api/coupons/claim
  admin       curl -H 'Authorization: Bearer ${token}' ${base}/admin/status
  first run   ${runId}: curl -H 'Authorization: Bearer ${token}' ${base}/admin/runs/${runId}
  (the admin token is ADMIN_TOKEN, or the one kept in .data/admin-token; Ctrl-C stops everything)
`)
  const result = await waitFor(`run ${runId} to be swapped in`, async () => {
    const run = await (await fetch(`${base}/admin/runs/${runId}`, { headers: auth })).json() as { result: { state: string, validCount: number | null, error: string | null } | null }
    return run.result ?? undefined
  }, 24 * 3600_000, 1000)
  console.log(result.state === 'applied'
    ? `run ${runId} applied: ${result.validCount} valid codes are live. Try: curl -i ${base}/coupons/HAPPYHRS`
    : `run ${runId} ended as ${result.state}: ${result.error ?? ''}`)
} catch (err) {
  if (!stopping) {
    console.error(`npm start: ${(err as Error).message}`)
    process.exitCode = 1
    await stopAll()
  }
}
await Promise.all(roles.map((role) => role.exited))
