// The ingest's metrics, kept by the process hosting a real sandboxed worker, after a real run.
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { createRegistry } from '../../src/shared/metrics.js'
import { sampleValue } from '../helpers/metrics-text.js'
import { queueStack } from '../helpers/queues-env.js'

t.test('after a run, the bytes and codes counters hold each file\'s size and codes, and its progress is 1', async (t) => {
  const registry = createRegistry('test', { processMetrics: false })
  const { dir, runs } = await queueStack(t, 'ingest-metrics', {}, { metricsRegistry: registry })
  await generateCoupons({ outDir: dir, scale: 0.002, seed: 21 })
  const files = ['couponbase1.gz', 'couponbase3.gz']

  const started = await runs.startRun(files, 'admin')
  const run = await waitFor(`run ${started.runId} to finish`, async () => {
    const view = await runs.getRun(started.runId)
    return view !== null && (view.state === 'completed' || view.state === 'failed') ? view : null
  }, 120_000, 200)
  t.equal(run.state, 'completed')

  for (const file of run.files) {
    const size = (await stat(join(dir, file.file))).size
    const codes = file.progress?.codes ?? -1
    t.ok(codes > 1000, `${file.file}: ${codes} codes`)
    // The last progress report may reach the host just after the job's completion.
    const text = await waitFor(`the last progress report of ${file.file}`, async () => {
      const text = await registry.metrics()
      return sampleValue(text, 'coupons_ingest_bytes_total', { file: file.file }) === size ? text : null
    }, 10_000)
    t.equal(sampleValue(text, 'coupons_ingest_bytes_total', { file: file.file }), size, `${file.file}: every compressed byte, once`)
    t.equal(sampleValue(text, 'coupons_ingest_codes_total', { file: file.file }), codes, `${file.file}: the job's codes`)
    t.equal(sampleValue(text, 'coupons_ingest_progress_ratio', { file: file.file }), 1)
    t.equal(sampleValue(text, 'coupons_ingest_jobs_total', { file: file.file, outcome: 'completed' }), 1)
  }
  const text = await registry.metrics()
  t.equal(sampleValue(text, 'coupons_ingest_bytes_total', { file: 'couponbase2.gz' }), undefined, 'a file not in the run has no sample')
})

t.test('a job that fails for good counts as failed, and its progress is not reported as complete', async (t) => {
  const registry = createRegistry('test', { processMetrics: false })
  const { dir, runs } = await queueStack(t, 'ingest-metrics-fail', { INGEST_ATTEMPTS: '3' }, { metricsRegistry: registry })
  await generateCoupons({ outDir: dir, scale: 0.001, seed: 22 })
  const path = join(dir, 'couponbase2.gz')
  await writeFile(path, (await readFile(path)).subarray(0, 20_000))

  const started = await runs.startRun(['couponbase2.gz'], 'admin')
  const run = await waitFor(`run ${started.runId} to fail`, async () => {
    const view = await runs.getRun(started.runId)
    return view !== null && (view.state === 'completed' || view.state === 'failed') ? view : null
  }, 120_000, 200)
  t.equal(run.state, 'failed')
  const text = await waitFor('the failure in the metrics', async () => {
    const text = await registry.metrics()
    return sampleValue(text, 'coupons_ingest_jobs_total', { file: 'couponbase2.gz', outcome: 'failed' }) === 1 ? text : null
  }, 10_000)
  t.equal(sampleValue(text, 'coupons_ingest_jobs_total', { file: 'couponbase2.gz', outcome: 'completed' }), undefined)
  t.ok((sampleValue(text, 'coupons_ingest_progress_ratio', { file: 'couponbase2.gz' }) ?? 0) < 1, 'not shown as complete')
})
