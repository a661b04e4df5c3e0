// Acceptance: the real processes as a user runs them (separate `api` and `aggregator`, real Kafka
// and Redis), driven only through HTTP. What checkout sees after a run must be exactly the answer
// key; a second run that re-ingests one changed file moves the set, with the API answering
// throughout.
import { createReadStream } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import t from 'tap'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import type { RunResult } from '../../src/shared/run-contract.js'
import { roleStack } from '../helpers/role-stack.js'
import { REAL_VALID } from '../helpers/real-codes.js'

const REAL_INVALID = ['SUPER100', 'MOODYHRS', 'HAPPYHOURS', 'BUYGETONE', 'OVER900000', 'happyhrs']

async function readAll (path: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of createReadStream(path)) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

t.test('the pipeline publishes exactly the answer key, and a re-ingest of one file moves it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coupons-e2e-'))
  const key = await generateCoupons({ outDir: dir, scale: 0.0005, seed: 11 })
  const { base, auth, start } = await roleStack(t, 'e2e', dir)
  for (const role of ['aggregator', 'api']) start(role)

  const coupon = async (code: string): Promise<number> => (await fetch(`${base}/coupons/${encodeURIComponent(code)}`)).status
  const startRun = async (body: object): Promise<string> => {
    const response = await fetch(`${base}/admin/ingest`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    t.equal(response.status, 202, 'POST /admin/ingest is accepted')
    return ((await response.json()) as { runId: string }).runId
  }
  const runResult = async (runId: string): Promise<RunResult> => await waitFor(`run ${runId} to finish`, async () => {
    const response = await fetch(`${base}/admin/runs/${runId}`, { headers: auth })
    if (!response.ok) return undefined
    return ((await response.json()) as { result: RunResult | null }).result ?? undefined
  }, 180_000, 500)

  await waitFor('the api to be healthy', async () => ((await fetch(`${base}/health`)).ok ? true : undefined), 60_000)
  t.equal(await coupon('HAPPYHRS'), 503, 'before any set is published the API says it does not know')

  // First run: all three files.
  const requestedAt = Date.now()
  const firstRun = await startRun({})
  const first = await runResult(firstRun)
  t.equal(first.state, 'applied', `the first run is applied (${first.error ?? 'no error'})`)
  t.equal(first.validCount, key.valid.length)

  for (const code of key.valid) t.equal(await coupon(code), 200, `${code} is valid`)
  for (const code of key.decoys) t.equal(await coupon(code), 404, `${code} is not`)
  for (const code of REAL_VALID) t.equal(await coupon(code), 200, `real code ${code} is valid`)
  for (const code of REAL_INVALID) t.equal(await coupon(code), 404, `real near miss ${code} is not`)

  const status = await (await fetch(`${base}/admin/status`, { headers: auth })).json() as { generation: string, validCount: number, lastSwapAt: string }
  t.equal(status.generation, firstRun, '/admin/status shows the run as the generation')
  t.equal(status.validCount, key.valid.length, '/admin/status shows the valid count')
  t.ok(Date.parse(status.lastSwapAt) >= requestedAt, '/admin/status shows the swap of this run as lastSwapAt')

  // Second run: file 2 loses a code it shared with file 1 only, and gains file 1's decoy SUPER100.
  const dropped = Object.entries(key.planted).find(([, files]) => files.join() === 'couponbase1.gz,couponbase2.gz')?.[0]
  if (dropped === undefined) throw new Error('the answer key has no code in exactly files 1 and 2')
  const file2 = join(dir, 'couponbase2.gz')
  const lines = gunzipSync(await readAll(file2)).toString('latin1').split('\n').filter((line) => line !== '' && line !== dropped)
  await writeFile(file2, gzipSync(Buffer.from([...lines, 'SUPER100', ''].join('\n'), 'latin1')))

  let polls = 0
  const unexpected: number[] = []
  const stopPolling = new AbortController()
  const poller = (async () => {
    while (!stopPolling.signal.aborted) {
      const status = await coupon('HAPPYHRS')
      polls++
      if (status !== 200) unexpected.push(status)
    }
  })()
  let second: RunResult
  let secondRun: string
  try {
    secondRun = await startRun({ files: ['couponbase2.gz'] })
    second = await runResult(secondRun)
  } finally {
    stopPolling.abort()
    await poller.catch(() => {})
  }
  t.equal(second.state, 'applied', `the re-ingest is applied (${second.error ?? 'no error'})`)
  t.same(unexpected, [], `HAPPYHRS answered 200 to all ${polls} requests during the re-ingest`)
  t.ok(polls > 10, 'the poller really ran during the re-ingest')

  t.equal(await coupon(dropped), 404, `${dropped}, now only in file 1, is no longer valid`)
  t.equal(await coupon('SUPER100'), 200, 'SUPER100, now in files 1 and 2, is valid')
  for (const code of key.valid.filter((code) => code !== dropped)) t.equal(await coupon(code), 200, `${code} is still valid`)
  t.equal(second.validCount, key.valid.length, 'one code left and one came: the count is the same')
  const after = await (await fetch(`${base}/admin/status`, { headers: auth })).json() as { generation: string }
  t.equal(after.generation, secondRun, 'the second run is the generation now')
})
