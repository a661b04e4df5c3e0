// A failure that always recurs ends a run instead of looping (issue 14), through real `coupons api`
// and `coupons aggregator` processes. The aggregator connects as a Redis ACL user that may not SADD:
// every attempt at staging fails the same way (as with a Redis out of memory, the error is one a
// retry could fix, so it is retried), and after AGGREGATOR_MAX_ATTEMPTS the run is recorded failed
// with its last error, GET /admin/runs/:runId shows it, and the live set is untouched.
import { randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { redisKeys } from '../../src/shared/redis-keys.js'
import type { Run, RunResult } from '../../src/shared/run-contract.js'
import { startRole } from '../../scripts/lib/role-process.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { roleStack } from '../helpers/role-stack.js'

t.test('a staging failure that always recurs fails the run after AGGREGATOR_MAX_ATTEMPTS, visible in /admin/runs/:runId, with the live set untouched', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'aggregator-budget-'))
  const key = await generateCoupons({ outDir: dir, scale: 0.001, seed: 51 })
  const stack = await roleStack(t, 'agg-budget', dir, { AGGREGATOR_MAX_ATTEMPTS: '3', AGGREGATOR_RETRY_DELAY_MS: '300' })
  const { base, auth, redis } = stack
  const getRun = async (runId: string): Promise<Run | null> => {
    const response = await fetch(`${base}/admin/runs/${runId}`, { headers: auth })
    return response.ok ? await response.json() as Run : null
  }
  const ingest = async (): Promise<string> => {
    const response = await fetch(`${base}/admin/ingest`, { method: 'POST', headers: auth })
    t.equal(response.status, 202)
    return (await response.json() as { runId: string }).runId
  }
  const resultOf = async (runId: string): Promise<RunResult> =>
    await waitFor(`run ${runId}'s result`, async () => (await getRun(runId))?.result ?? undefined, 120_000, 250) as RunResult

  stack.start('api')
  await waitFor('the api to be healthy', async () => ((await fetch(`${base}/health`).catch(() => null))?.ok === true ? true : undefined), 60_000)
  const healthy = stack.start('aggregator')
  const first = await ingest()
  t.equal((await resultOf(first)).state, 'applied', 'a first run is applied by a healthy aggregator')
  t.equal(await healthy.stop(), 0)
  const liveBefore = (await redis.smembers(redisKeys(stack.config.redisPrefix).valid)).sort()
  t.same(liveBefore, key.valid, 'the live set is the answer key')

  // The same aggregator, except that its Redis user may not SADD (the ACL user accepts any password).
  const user = `agg-budget-${randomBytes(4).toString('hex')}`
  await redis.call('ACL', 'SETUSER', user, 'on', 'nopass', '~*', '&*', '+@all', '-sadd')
  t.teardown(async () => { await redis.call('ACL', 'DELUSER', user) })
  const url = new URL(stack.config.redisUrl)
  url.username = user
  url.password = 'any'
  const denied = startRole('aggregator', [], { ...stack.env, REDIS_URL: url.toString() }, ['ignore', 'pipe', 'pipe'])
  const logs: string[] = []
  denied.child.stdout?.on('data', (chunk: Buffer) => logs.push(chunk.toString()))
  t.teardown(async () => { await denied.stop() })

  const second = await ingest()
  const result = await resultOf(second)
  t.equal(result.state, 'failed', JSON.stringify(result))
  t.match(result.error, /^AGGREGATOR_STAGING_FAILED: writing the staging set failed: NOPERM/, 'the last error names the cause')
  t.equal(result.attempts, 3, 'after AGGREGATOR_MAX_ATTEMPTS attempts')
  t.equal(result.appliedAt, null)
  t.same(result.segments, [])
  const lines = logs.join('').split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { msg: string, runId?: string, failures?: number })
  t.same(lines.filter((line) => line.runId === second && line.msg.startsWith('aggregation failed; retrying')).map((line) => line.failures), [1, 2], 'two retries, with backoff, before giving up')

  const status = await (await fetch(`${base}/admin/status`, { headers: auth })).json() as { generation: string, validCount: number }
  t.equal(status.generation, first, 'the live set is still the first run\'s')
  t.equal(status.validCount, key.valid.length)
  const code = key.valid[0]
  t.equal((await fetch(`${base}/coupons/${code}`)).status, 200, 'and checkout still finds its codes')
})
