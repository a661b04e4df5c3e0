// `coupons aggregator` as a real process: SIGKILLed at several points of a run and restarted, the
// final set is always right, and a reader polling during the swap only ever sees the old set or
// the new one.
import t from 'tap'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { META, PLAN, RUN_RESULT } from '../../src/shared/redis-keys.js'
import type { RunPhase } from '../../src/aggregator/run-phases.js'
import { changeSecondFile, ingestRun, liveSet, pollMembership, runResult, setupPipeline, spawnAggregator, waitFor } from '../helpers/aggregator-fixtures.js'
import { freePort } from '../helpers/api-env.js'
import { sampleValue } from '../helpers/metrics-text.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']
const PAUSE_POINTS: RunPhase[] = ['reading', 'staging', 'after-exec']

for (const point of PAUSE_POINTS) {
  t.test(`killed ${point === 'after-exec' ? 'right after the MULTI' : `while ${point}`}, a restarted aggregator ends with the right set`, async (t) => {
    const pipeline = await setupPipeline(t, `agg-kill-${point}`)
    const key = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 21 })

    const first = spawnAggregator(t, pipeline)
    await first.waitForLog('aggregator started')
    const run1 = await ingestRun(pipeline, FILES)
    t.equal((await runResult(pipeline, run1.runId)).state, 'applied')
    t.same(await liveSet(pipeline), key.valid)
    first.child.kill('SIGTERM')
    t.equal(await first.exited, 0, 'SIGTERM closes the aggregator cleanly')

    // File 2 loses a code valid through files 1 and 2 only, and gains a code of file 1 only.
    const { dropped, added, expected, kept } = await changeSecondFile(pipeline, key, FILES)

    const poller = pollMembership(t, pipeline, [dropped, added, kept])
    // One decide thread: partitions are then staged one after the other, so freezing at the first
    // staging event leaves exactly partition 0 staged (with two, partition 1 may be staging too).
    // The restarted aggregator below decides with the default threads.
    const paused = spawnAggregator(t, { ...pipeline, env: { ...pipeline.env, AGGREGATOR_DECIDE_THREADS: '1' } }, { pauseAt: point })
    await paused.waitForLog('aggregator started')
    const run2 = await ingestRun(pipeline, [FILES[1]])
    const pausedAt = await paused.waitForLog('aggregator paused')
    t.equal(pausedAt.phase, point)
    t.equal(pausedAt.runId, run2.runId)
    if (point === 'after-exec') {
      t.equal(await pipeline.redis.exists(pipeline.keys.retired(run2.runId)), 1, 'killed before the old set is unlinked')
    } else {
      t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.generation), run1.runId, 'nothing is swapped yet')
    }
    if (point === 'staging') {
      const planId = await pipeline.redis.hget(pipeline.keys.plan, PLAN.planId) as string
      t.match(planId, `${run2.runId}.`, 'the run\'s plan is the current one')
      const staged = await pipeline.redis.scard(pipeline.keys.staging(planId))
      t.same({ partition: pausedAt.partition, staged }, { partition: 0, staged: pausedAt.validCount }, 'killed with the staging set of partition 0 only')
      t.ok(staged < expected.length, `a partial staging set: ${staged} of ${expected.length} codes`)
    }
    await paused.kill()

    const restarted = spawnAggregator(t, pipeline)
    await restarted.waitForLog('aggregator started')
    const result = await runResult(pipeline, run2.runId)
    t.equal(result[RUN_RESULT.state], 'applied')
    await waitFor('the generation of run 2', async () => await pipeline.redis.hget(pipeline.keys.meta, META.generation) === run2.runId)
    t.same(await liveSet(pipeline), expected)
    t.equal(await pipeline.redis.hget(pipeline.keys.meta, META.validCount), String(expected.length))
    t.same(await pipeline.redis.keys(pipeline.keys.staging('*')), [], 'no staging set is left')
    // The retired set is unlinked right after the EXEC that changed the generation: wait for it.
    await waitFor('no retired set', async () => (await pipeline.redis.keys(pipeline.keys.retired('*'))).length === 0)

    const seen = await poller.stop()
    t.same([...seen].sort(), ['011', '101'], 'the reader saw the old set, then the new one, and nothing else')
    restarted.child.kill('SIGTERM')
    t.equal(await restarted.exited, 0)
  })
}

t.test('with METRICS_PORT, `coupons aggregator` serves its metrics to a scrape with METRICS_TOKEN, and they count a run', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-metrics-port')
  const key = await generateCoupons({ outDir: pipeline.dir, scale: 0.001, seed: 22 })
  const port = await freePort()
  const token = 'test-metrics-token-0123456789abcdef'
  const aggregator = spawnAggregator(t, { ...pipeline, env: { ...pipeline.env, METRICS_PORT: String(port), METRICS_TOKEN: token } })
  const served = await aggregator.waitForLog('metrics served')
  t.equal(served.url, `http://127.0.0.1:${port}/metrics`)
  await aggregator.waitForLog('aggregator started')
  t.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 401, 'no token: refused')

  const { runId } = await ingestRun(pipeline, FILES)
  t.equal((await runResult(pipeline, runId)).state, 'applied')
  const text = await waitFor('the run in the metrics', async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text()
    return sampleValue(text, 'coupons_aggregation_runs_total', { outcome: 'applied' }) === 1 ? text : null
  })
  t.equal(sampleValue(text, 'coupons_aggregation_phase_duration_seconds_count', { phase: 'total', role: 'aggregator' }), 1)
  t.equal(sampleValue(text, 'coupons_valid_set_codes', { set: pipeline.keys.valid }), key.valid.length)
  t.ok((sampleValue(text, 'process_resident_memory_bytes') ?? 0) > 0, "and the process's own metrics")

  t.equal(await aggregator.stop(), 0, 'SIGTERM closes the aggregator and its metrics server cleanly')
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'the metrics port is closed')
})
