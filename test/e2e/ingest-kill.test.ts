// Acceptance: the api that hosts the ingest worker is SIGKILLed in the middle of a run of three
// files (real `api` and `aggregator` processes, real Kafka and Redis). Nothing of its process tree
// may keep running, the run shows as stalled while no worker is alive, and after a restart the run
// completes once per file: one manifest per file, the answer key published, and the run view
// naming the segments that were applied. Then a file overwritten while it is read fails its run
// with INGEST_FILE_CHANGED and leaves the live set alone.
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { LOCK_DURATION_MS } from '../../src/queues/ingest-jobs.js'
import { IngestRuns } from '../../src/queues/ingest-runs.js'
import { topicNames } from '../../src/shared/kafka.js'
import type { Run, RunResult } from '../../src/shared/run-contract.js'
import { readManifests } from '../helpers/ingest-read.js'
import { descendants, isRunning } from '../helpers/process-tree.js'
import { roleStack } from '../helpers/role-stack.js'
import { silentLogger, testKafka } from '../helpers/test-env.js'

t.test('an api killed during a run leaves no process behind, and its restart completes the run once per file', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coupons-kill-'))
  // Large enough that the three files take seconds to ingest, so the kill lands in the middle.
  const key = await generateCoupons({ outDir: dir, scale: 0.04, seed: 12 })
  const { config, base, auth, start } = await roleStack(t, 'kill', dir, { INGEST_CONCURRENCY: '3' })
  const kafka = testKafka(config)
  const runs = new IngestRuns({ config, logger: silentLogger })
  t.teardown(() => runs.close())

  const getRun = async (runId: string): Promise<Run | undefined> => {
    const response = await fetch(`${base}/admin/runs/${runId}`, { headers: auth })
    return response.ok ? (await response.json()) as Run : undefined
  }
  const startRun = async (files?: string[]): Promise<string> => {
    const response = await fetch(`${base}/admin/ingest`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ files }) })
    t.equal(response.status, 202, 'POST /admin/ingest is accepted')
    return ((await response.json()) as { runId: string }).runId
  }
  const coupon = async (code: string): Promise<number> => (await fetch(`${base}/coupons/${encodeURIComponent(code)}`)).status
  const healthy = async (): Promise<void> => { await waitFor('the api to be healthy', async () => ((await fetch(`${base}/health`)).ok ? true : undefined), 60_000) }

  start('aggregator')
  const api = start('api')
  await healthy()

  // 1. Kill the api when every file is a good part read.
  const runId = await startRun()
  const before = await waitFor('every file to be 35 % read', async () => {
    const run = await getRun(runId)
    return run?.files.every((file) => (file.progress?.percent ?? 0) >= 35) === true ? run : undefined
  }, 120_000, 100)
  const tree = await descendants(api.child.pid!)
  const killedAt = Date.now()
  await api.kill()
  t.comment(`killed at ${before.files.map((file) => `${file.file} ${file.progress?.percent ?? 0} %`).join(', ')}; its tree: ${tree.join(', ')}`)
  t.ok(before.files.every((file) => file.state === 'active'), 'every file was still being ingested')
  t.ok(tree.length >= 3, 'the api had its three sandboxed children')

  const survivors = async (): Promise<number[]> => (await Promise.all(tree.map(async (pid) => (await isRunning(pid)) ? pid : null))).filter((pid) => pid !== null)
  await waitFor('every process of the killed api to exit', async () => (await survivors()).length === 0, 5000, 50).catch(() => {})
  t.same(await survivors(), [], `no process of the api's tree runs ${Date.now() - killedAt} ms after the kill`)

  // 2. With no worker alive, the run shows its files stalled once their job locks expire.
  const stalled = await waitFor('the run to show its files stalled', async () => {
    const run = await runs.getRun(runId)
    return run?.files.every((file) => file.state === 'stalled') === true ? run : undefined
  }, LOCK_DURATION_MS + 30_000, 250)
  const stalledAfterMs = Date.now() - killedAt
  t.ok(stalledAfterMs <= LOCK_DURATION_MS + 5000, `the files show stalled ${stalledAfterMs} ms after the kill (lock duration ${LOCK_DURATION_MS} ms)`)
  t.equal(stalled.state, 'stalled', 'and so does the run')

  // 3. Restart: the stalled jobs are retried and the run completes.
  const restartedAt = Date.now()
  start('api')
  await healthy()
  const result = await waitFor(`run ${runId} to be applied`, async () => (await getRun(runId))?.result ?? undefined, 180_000, 500) as RunResult
  t.comment(`applied ${Date.now() - restartedAt} ms after the restart (${Date.now() - killedAt} ms after the kill)`)
  t.equal(result.state, 'applied', `the run is applied (${result.error ?? 'no error'})`)
  t.equal(result.validCount, key.valid.length, 'with the answer key\'s count')
  for (const code of key.valid) t.equal(await coupon(code), 200, `${code} is valid`)
  for (const code of key.decoys) t.equal(await coupon(code), 404, `${code} is not`)

  const manifests = (await readManifests(kafka, topicNames(config).segments)).filter((manifest) => manifest.runId === runId)
  t.same(manifests.map((manifest) => manifest.file).sort(), [...config.couponFiles].sort(), 'one manifest per file for the run')

  const view = await waitFor('the run view to be complete', async () => {
    const run = await getRun(runId)
    return run?.state === 'completed' ? run : undefined
  }, 60_000, 250)
  for (const file of view.files) {
    const manifest = manifests.find((m) => m.file === file.file)
    t.equal(file.state, 'completed', `${file.file} is completed`)
    t.equal(file.appliedSegmentId, manifest?.segmentId, `${file.file} names the applied segment, the one with a manifest`)
    t.equal(file.segmentId, manifest?.segmentId, `${file.file}'s job reports that same segment`)
    t.equal(file.failedReason, null, `${file.file} shows no failure reason`)
    t.equal(file.attempts.at(0)?.outcome, 'interrupted', `${file.file}'s killed attempt is listed as interrupted`)
    t.equal(file.attempts.at(-1)?.outcome, 'produced', `${file.file}'s last attempt produced the segment`)
    t.equal(file.attempts.at(-1)?.segmentId, manifest?.segmentId)
  }

  // 4. A file overwritten in place while it is read fails its run; the live set stays.
  const generation = (await (await fetch(`${base}/admin/status`, { headers: auth })).json() as { generation: string }).generation
  t.equal(generation, runId)
  const changedRun = await startRun(['couponbase1.gz'])
  await waitFor('couponbase1.gz to be 5 % read', async () => (((await getRun(changedRun))?.files[0].progress?.percent ?? 0) >= 5), 60_000, 50)
  await writeFile(join(dir, 'couponbase1.gz'), gzipSync('SUPER100\nMOODYHRS\n'))
  const failed = await waitFor('the run to fail', async () => {
    const run = await getRun(changedRun)
    return run?.state === 'failed' ? run : undefined
  }, 60_000, 250)
  t.match(failed.files[0].failedReason, /^INGEST_FILE_CHANGED: couponbase1\.gz/, 'the file fails as changed while read')
  t.equal(failed.files[0].attempts.length, 1, 'and is not retried')
  const status = await (await fetch(`${base}/admin/status`, { headers: auth })).json() as { generation: string, validCount: number }
  t.equal(status.generation, runId, 'the live set is still the killed run\'s')
  t.equal(status.validCount, key.valid.length)
  t.equal(await coupon('SUPER100'), 404, 'nothing of the overwritten file was published')
})
