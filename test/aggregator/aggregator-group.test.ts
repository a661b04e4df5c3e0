// Several `coupons aggregator` processes in one consumer group (issue 14), against the real Kafka
// and Redis: they split the partitions and publish exactly what one publishes; when one is
// SIGKILLed mid-run the other finishes the run, and a reader never sees a wrong answer.
// Which instance decided which partition is read from the run's result (`deciders`, also shown by
// GET /admin/runs/:runId), which the swap script builds from the staged-partition records.
import t, { type Test } from 'tap'
import { generateCoupons, type AnswerKey } from '../../src/gen/generate-coupons.js'
import { RUN_RESULT } from '../../src/shared/redis-keys.js'
import { changeSecondFile, ingestRun, liveSet, pollMembership, runResult, setupPipeline, spawnAggregator, waitFor, type AggregatorChild, type Pipeline } from '../helpers/aggregator-fixtures.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']
const PARTITIONS = 6

/** Waits until the children's latest assignments split every partition between them, each some. */
async function settled (children: AggregatorChild[]): Promise<Array<{ member: string, partitions: number[] }>> {
  return await waitFor('the group to split the partitions', async () => {
    const latest = children.map((child) => child.logs('partitions assigned').at(-1))
    if (latest.some((line) => line === undefined)) return null
    const owned = latest.map((line) => ({ member: String(line?.member), partitions: line?.partitions as number[] }))
    const all = owned.flatMap(({ partitions }) => partitions).sort((a, b) => a - b)
    const coordinators = latest.filter((line) => line?.coordinator === true).length
    const split = owned.every(({ partitions }) => partitions.length > 0) && all.join() === Array.from({ length: PARTITIONS }, (_, p) => p).join() && coordinators === 1
    return split ? owned : null
  }, 60_000)
}

async function twoAggregators (t: Test, pipeline: Pipeline, first: AggregatorChild): Promise<Array<{ member: string, partitions: number[] }>> {
  const second = spawnAggregator(t, pipeline)
  await Promise.all([first.waitForLog('aggregator started'), second.waitForLog('aggregator started')])
  return await settled([first, second])
}

t.test('two aggregator processes publish exactly the answer key, each deciding the partitions the group gave it', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-group', { KAFKA_PARTITIONS: String(PARTITIONS) })
  const key: AnswerKey = await generateCoupons({ outDir: pipeline.dir, scale: 0.002, seed: 31 })
  const owned = await twoAggregators(t, pipeline, spawnAggregator(t, pipeline))

  const { runId } = await ingestRun(pipeline, FILES)
  const result = await runResult(pipeline, runId)
  t.equal(result[RUN_RESULT.state], 'applied', JSON.stringify(result))
  t.same(await liveSet(pipeline), key.valid, 'the live set is exactly the answer key')
  const deciders = JSON.parse(result[RUN_RESULT.deciders]) as Record<string, number[]>
  t.same(Object.keys(deciders).sort(), owned.map(({ member }) => member).sort(), 'both instances decided partitions')
  for (const { member, partitions } of owned) t.same([...deciders[member]].sort((a, b) => a - b), partitions, `${member} decided exactly its partitions`)
})

t.test('SIGKILL one of two aggregators mid-run: the other completes the run and a reader never sees a wrong answer', async (t) => {
  const pipeline = await setupPipeline(t, 'agg-group-kill', { KAFKA_PARTITIONS: String(PARTITIONS) })
  const key: AnswerKey = await generateCoupons({ outDir: pipeline.dir, scale: 0.002, seed: 32 })
  // The first instance freezes (event loop blocked) right after staging its first partition of a run.
  const doomed = spawnAggregator(t, pipeline, { pauseAt: 'staging' })
  const survivor = spawnAggregator(t, pipeline)
  await Promise.all([doomed.waitForLog('aggregator started'), survivor.waitForLog('aggregator started')])
  const owned = await settled([doomed, survivor])
  const doomedMember = owned.find(({ member }) => member === doomed.logs('partitions assigned').at(-1)?.member) as { member: string, partitions: number[] }

  // A first run freezes the doomed instance; it is killed, and the survivor publishes the run.
  const run1 = await ingestRun(pipeline, FILES)
  const paused = await doomed.waitForLog('aggregator paused')
  t.equal(paused.runId, run1.runId)
  t.ok(doomedMember.partitions.includes(paused.partition as number), `frozen after staging partition ${String(paused.partition)}, one of its own`)
  await doomed.kill()
  const result = await runResult(pipeline, run1.runId, 90_000)
  t.equal(result[RUN_RESULT.state], 'applied', JSON.stringify(result))
  t.same(await liveSet(pipeline), key.valid, 'the set is the answer key')
  const deciders = JSON.parse(result[RUN_RESULT.deciders]) as Record<string, number[]>
  t.same(deciders[doomedMember.member], [paused.partition], 'the killed instance\'s one staged partition was kept')
  const survivorMember = owned.find(({ member }) => member !== doomedMember.member)?.member as string
  t.same([...deciders[survivorMember]].sort((a, b) => a - b), Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => p !== paused.partition),
    'the survivor decided every other partition, the killed one\'s included')

  // Second: a run that changes the set, with a new doomed instance killed mid-run while a reader polls.
  const { dropped, added, expected, kept } = await changeSecondFile(pipeline, key, FILES)

  const doomed2 = spawnAggregator(t, pipeline, { pauseAt: 'staging' })
  await doomed2.waitForLog('aggregator started')
  await settled([doomed2, survivor])
  const poller = pollMembership(t, pipeline, [dropped, added, kept])
  const run2 = await ingestRun(pipeline, [FILES[1]])
  await waitFor('an instance to freeze mid-run', async () => doomed2.logs('aggregator paused').length > 0 ? true : null)
  await doomed2.kill()
  t.equal((await runResult(pipeline, run2.runId, 90_000))[RUN_RESULT.state], 'applied')
  t.same(await liveSet(pipeline), expected)
  const seen = await poller.stop()
  t.same([...seen].sort(), ['011', '101'], 'the reader saw the old set, then the new one, and nothing else')
  t.equal(await survivor.stop(), 0)
})
