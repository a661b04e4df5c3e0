// decidePartitions against the real Kafka and Redis, with segments produced by the real ingest and
// read through a group consumer that owns the partitions: one instance's share of a run is
// decided into the run's staging set and recorded staged, partition by partition, so that the
// swap publishes the set once every partition is; a count mismatch stages nothing of its partition.
// With several decide threads and states, partitions are decided and staged at once, and the first
// failure among them is the one thrown, once every decision has settled.
// How a plan is made (missing files, mixed partition counts) is planRun's (run-plan.test.ts).
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { generateCoupons, type AnswerKey } from '../../src/gen/generate-coupons.js'
import { produceFile } from '../../src/ingest/produce-file.js'
import { packCode, partitionOf } from '../../src/shared/code-packing.js'
import { topicNames } from '../../src/shared/kafka.js'
import type { Logger } from '../../src/shared/logger.js'
import { newRunId, type SegmentManifest } from '../../src/shared/segments.js'
import { decidePartitions, stateCount, type PartitionsStats } from '../../src/aggregator/decide-partitions.js'
import type { PackedCodes } from '../../src/aggregator/decide-words.js'
import { PartitionState } from '../../src/aggregator/partition-state.js'
import { expectedCodes, planRun, type RunPlan } from '../../src/aggregator/run-plan.js'
import { ValidSetSwap, type SwapOutcome } from '../../src/aggregator/valid-set-swap.js'
import { liveSet, setupPipeline, type Pipeline } from '../helpers/aggregator-fixtures.js'
import { startGroupReader, type GroupReader } from '../helpers/group-reader.js'
import { onRunPhase, recordRunPhases } from '../helpers/run-phases.js'
import { silentLogger } from '../helpers/test-env.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']
/** A decision that never ends fails the test after this long instead of at tap's timeout. */
const DECIDE_TIMEOUT_MS = 60_000
const MIB = 1024 * 1024

interface Setup { pipeline: Pipeline, swap: ValidSetSwap, group: GroupReader | null }

async function prepare (t: Test, label: string): Promise<Setup> {
  const pipeline = await setupPipeline(t, label)
  return { pipeline, swap: new ValidSetSwap(pipeline.redis, pipeline.config.redisPrefix, silentLogger), group: null }
}

async function produce (setup: Setup, file: string, runId: string, codes?: string[]): Promise<SegmentManifest> {
  const { config, kafka, dir } = setup.pipeline
  if (codes !== undefined) await writeFile(join(dir, file), gzipSync(Buffer.from(codes.join('\n') + '\n')))
  return await produceFile({ config, kafka, logger: silentLogger, file, runId })
}

/** The plan of `runId` from these manifests, as if the newest of them were at coupons.segments offset `newestOffset`. */
function plan (setup: Setup, runId: string, manifests: SegmentManifest[], newestOffset: bigint): RunPlan {
  const offsets = new Map(manifests.map((manifest, i) => [manifest.file, newestOffset - BigInt(manifests.length - 1 - i)]))
  const byFile = new Map(manifests.map((manifest) => [manifest.file, manifest]))
  return planRun(runId, FILES, (file) => {
    const manifest = byFile.get(file)
    return manifest === undefined ? undefined : { manifest, offset: offsets.get(file) as bigint }
  }, setup.pipeline.config.minFiles)
}

interface DecideOptions {
  signal?: AbortSignal
  /** default: the config's (AGGREGATOR_DECIDE_THREADS, AGGREGATOR_STATE_MEMORY_MB) */
  decideThreads?: number
  stateMemoryBytes?: number
  /** default: the setup's */
  swap?: ValidSetSwap
  logger?: Logger
}

/** Generates the files (scale 0.001, `seed`), produces each for a new run, and plans it. */
async function producedRun (setup: Setup, seed: number): Promise<{ key: AnswerKey, runId: string, manifests: SegmentManifest[], runPlan: RunPlan }> {
  const key = await generateCoupons({ outDir: setup.pipeline.dir, scale: 0.001, seed })
  const runId = newRunId()
  const manifests: SegmentManifest[] = []
  for (const file of FILES) manifests.push(await produce(setup, file, runId))
  return { key, runId, manifests, runPlan: plan(setup, runId, manifests, 3n) }
}

/** Decides `partitions` of the plan as aggregator instance `member`; the group reader joins on first use (the data topics exist by then). */
async function decide (t: Test, setup: Setup, runPlan: RunPlan, partitions: number[], member: string, options: DecideOptions = {}): Promise<PartitionsStats> {
  const { config, kafka } = setup.pipeline
  const names = topicNames(config)
  setup.group ??= await startGroupReader(t, kafka, { topics: FILES.map((file) => names.data(file)), segmentsTopic: names.segments })
  return await decidePartitions({
    plan: runPlan,
    planId: runPlan.runId,
    partitions,
    reader: setup.group.reader,
    swap: options.swap ?? setup.swap,
    member,
    logger: options.logger ?? silentLogger,
    signal: options.signal ?? AbortSignal.timeout(DECIDE_TIMEOUT_MS),
    decideThreads: options.decideThreads ?? config.aggregatorDecideThreads,
    stateMemoryBytes: options.stateMemoryBytes ?? config.aggregatorStateMemoryBytes
  })
}

/** A ValidSetSwap whose first stage call fails once `failWhen` resolves; every other call stages as usual. */
class FirstStageFails extends ValidSetSwap {
  readonly error = new Error('staging the first decided partition failed')
  readonly #failWhen: Promise<void>
  #calls = 0

  constructor (setup: Setup, failWhen: Promise<void>) {
    super(setup.pipeline.redis, setup.pipeline.config.redisPrefix, silentLogger)
    this.#failWhen = failWhen
  }

  override async stage (planId: string, codes: PackedCodes): Promise<void> {
    if (++this.#calls === 1) {
      await this.#failWhen
      throw this.error
    }
    await super.stage(planId, codes)
  }
}

async function swap (setup: Setup, runPlan: RunPlan): Promise<SwapOutcome> {
  const segments = runPlan.segments.map(({ file, segmentId, runId }) => ({ file, segmentId, runId }))
  return await setup.swap.swap({ runId: runPlan.runId, partitions: runPlan.partitions, segments, segmentsOffset: BigInt(runPlan.segmentsOffset) })
}

/** An applied outcome's count and deciders (partitions sorted); null for any other outcome. */
function applied (outcome: SwapOutcome): { validCount: number, deciders: Record<string, number[]> } | null {
  if (outcome.state !== 'applied') return null
  const deciders = Object.fromEntries(Object.entries(outcome.deciders).map(([member, partitions]) => [member, [...partitions].sort((a, b) => a - b)]))
  return { validCount: outcome.validCount, deciders }
}

function partitionOfCode (setup: Setup, code: string): number {
  const { hi, lo } = packCode(code)
  return partitionOf(hi, lo, setup.pipeline.config.kafkaPartitions)
}

async function stagingSet (setup: Setup, runId: string): Promise<string[]> {
  return (await setup.pipeline.redis.smembers(setup.pipeline.keys.staging(runId))).sort()
}

/** Three small files whose valid set is SHARED01 and SHARED02, produced, decided and swapped in. */
async function applyBaseline (t: Test, setup: Setup): Promise<{ runId: string, manifests: SegmentManifest[] }> {
  const runId = newRunId()
  const manifests = [
    await produce(setup, FILES[0], runId, ['SHARED01', 'SHARED02', 'ONLYONE1']),
    await produce(setup, FILES[1], runId, ['SHARED01', 'SHARED02', 'ONLYTWO1']),
    await produce(setup, FILES[2], runId, ['SHARED02', 'ONLYTHRE'])
  ]
  const baseline = plan(setup, runId, manifests, 3n)
  await decide(t, setup, baseline, [0, 1, 2, 3], 'baseline')
  t.equal((await swap(setup, baseline)).state, 'applied', 'the baseline is applied')
  return { runId, manifests }
}

t.test('holds as many partition states as the memory budget allows, at most one per decide thread plus the one being read, never fewer than two', async (t) => {
  const fullSize = 313_000_000 // one partition of the full-size run's 313 M codes in 8 partitions, 8 bytes a code
  t.equal(stateCount(640 * MIB, fullSize, 2), 2, 'the default budget holds two full-size states, not three')
  t.equal(stateCount(640 * MIB, 30 * MIB, 2), 3, 'small states: one per thread plus the one being read')
  t.equal(stateCount(640 * MIB, 30 * MIB, 1), 2, 'one thread: one read while one is decided, as with a single decide thread before')
  t.equal(stateCount(100 * MIB, 30 * MIB, 8), 3, 'the budget bounds them below the threads\' share')
  t.equal(stateCount(400 * MIB, fullSize, 4), 2, 'never below two when two exceed the budget')
  t.equal(stateCount(16 * MIB, fullSize, 1), 2, 'nor with one thread')
})

/** A logger that keeps what it logs at warn and above. */
function warnings (): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  return { logger: pino({ level: 'warn' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } }), lines }
}

const POOLS = [
  { threads: 1, budget: 1024 * MIB, states: 2, why: 'one read while one is decided' },
  { threads: 2, budget: 1024 * MIB, states: 3, why: 'one read while two are decided' },
  { threads: 2, budget: 1, states: 2, why: 'two exceed the budget, which is warned about' }
]

for (const { threads, budget, states, why } of POOLS) {
  t.test(`with ${threads} decide thread(s) and ${states} states (${why}), decides every partition into the staging set, reading each before staging it, and the swap publishes exactly the answer key`, async (t) => {
    const setup = await prepare(t, `decide-all-${threads}-${states}`)
    const { pipeline } = setup
    const { key, runId, manifests, runPlan } = await producedRun(setup, 31)
    const events = recordRunPhases(t)
    const { logger, lines } = warnings()

    const stats = await decide(t, setup, runPlan, [0, 1, 2, 3], 'member-a', { decideThreads: threads, stateMemoryBytes: budget, logger })

    t.same(stats.partitions, [0, 1, 2, 3])
    t.equal(stats.staged, 4, 'all four partitions of the run are staged')
    t.equal(stats.validCount, key.valid.length)
    t.equal(stats.codesRead, manifests.reduce((sum, m) => sum + m.codes, 0), 'every code of every file was read')
    t.same(await stagingSet(setup, runId), key.valid, 'the staging set is the answer key')
    t.equal(stats.decideThreads, threads, 'the decide threads it used')
    t.equal(stats.states, states, 'the partition states it held')
    const capacity = Math.max(...[0, 1, 2, 3].map((p) => expectedCodes(runPlan, p)))
    t.equal(stats.stateBytes, states * PartitionState.bytesFor(capacity), 'each state sized for the largest partition')
    const warned = lines.filter((line) => String(line.msg).includes('AGGREGATOR_STATE_MEMORY_MB'))
    t.equal(warned.length, budget < 2 * PartitionState.bytesFor(capacity) ? 1 : 0, 'exceeding the budget is warned about once')
    if (warned.length > 0) t.match(warned[0].msg, /AGGREGATOR_DECIDE_THREADS.*KAFKA_PARTITIONS/, 'naming what to change')

    const staged = events.filter((e) => e.phase === 'staging')
    const order = staged.map((e) => e.partition)
    if (threads === 1) t.same(order, [0, 1, 2, 3], 'every partition is staged, in order')
    else t.same([...order].sort((a, b) => a - b), [0, 1, 2, 3], 'every partition is staged once')
    for (const event of staged) {
      const at = events.indexOf(event)
      t.ok(events.slice(0, at).some((e) => e.phase === 'reading' && e.partition === event.partition), `partition ${event.partition} is read before it is staged`)
    }
    t.ok(events.every((e) => e.runId === runId), 'every event names the run')

    const outcome = await swap(setup, runPlan)
    t.same(applied(outcome), { validCount: key.valid.length, deciders: { 'member-a': [0, 1, 2, 3] } })
    t.same(await liveSet(pipeline), key.valid)
  })
}

t.test('decides only the partitions it is given, records each staged with its count and member, and returns how many of the run are staged', async (t) => {
  const setup = await prepare(t, 'decide-share')
  const { pipeline } = setup
  const { key, runId, manifests, runPlan } = await producedRun(setup, 32)
  const validIn = (partitions: number[]): string[] => key.valid.filter((code) => partitions.includes(partitionOfCode(setup, code)))
  const codesIn = (partitions: number[]): number => manifests.reduce((sum, m) => sum + partitions.reduce((n, p) => n + m.partitions[p].codes, 0), 0)

  const first = await decide(t, setup, runPlan, [1, 3], 'member-a')
  t.equal(first.staged, 2, 'two of the run\'s four partitions are staged')
  t.equal(first.codesRead, codesIn([1, 3]), 'only partitions 1 and 3 were read')
  t.equal(first.validCount, validIn([1, 3]).length)
  t.same(await stagingSet(setup, runId), validIn([1, 3]), 'the staging set holds the valid codes of partitions 1 and 3 only')
  const afterFirst = await setup.swap.stagedPartitions(runId)
  t.same([...afterFirst.keys()].sort(), [1, 3])
  for (const p of [1, 3]) t.match(afterFirst.get(p), { validCount: validIn([p]).length, member: 'member-a' }, `partition ${p} is recorded with its count and member`)
  t.same(await swap(setup, runPlan), { state: 'incomplete', staged: 2 }, 'the swap waits for the other partitions')

  const second = await decide(t, setup, runPlan, [0, 2], 'member-b')
  t.equal(second.staged, 4, 'with the other member\'s, every partition is staged')
  const afterSecond = await setup.swap.stagedPartitions(runId)
  t.same([...afterSecond.keys()].sort(), [0, 1, 2, 3])
  for (const p of [0, 2]) t.match(afterSecond.get(p), { validCount: validIn([p]).length, member: 'member-b' }, `partition ${p} is recorded with its count and member`)

  const outcome = await swap(setup, runPlan)
  t.same(applied(outcome), { validCount: key.valid.length, deciders: { 'member-a': [1, 3], 'member-b': [0, 2] } }, 'the swap names who decided which partition')
  t.same(await liveSet(pipeline), key.valid)
})

t.test('a count mismatch fails with AGGREGATOR_COUNT_MISMATCH, records nothing for that partition, and the run cannot swap', async (t) => {
  const setup = await prepare(t, 'decide-mismatch')
  const { pipeline } = setup
  const baseline = await applyBaseline(t, setup)
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'])

  // A new file 3 that would make ONLYONE1 valid, with a manifest claiming one code too many.
  const runId = newRunId()
  const manifest = await produce(setup, FILES[2], runId, ['ONLYONE1', 'ONLYTHRE'])
  const range = manifest.partitions.find((r) => r.codes > 0)
  if (range === undefined) throw new Error('the file has codes in some partition')
  const lying = { ...manifest, partitions: manifest.partitions.map((r) => r === range ? { ...r, codes: r.codes + 1 } : r) }
  const runPlan = plan(setup, runId, [baseline.manifests[0], baseline.manifests[1], lying], 4n)

  await t.rejects(decide(t, setup, runPlan, [0, 1, 2, 3], 'member-a'), {
    name: 'CouponsError',
    code: 'AGGREGATOR_COUNT_MISMATCH',
    message: new RegExp(`^couponbase3\\.gz: segment ${manifest.segmentId} partition ${range.partition} should hold ${range.codes + 1} codes`)
  })
  const staged = [...(await setup.swap.stagedPartitions(runId)).keys()]
  t.notOk(staged.includes(range.partition), `partition ${range.partition}, the mismatched one, is not recorded staged`)
  t.same(staged.filter((p) => p > range.partition), [], 'nor is any partition after it: the decision stopped there')
  t.same(await swap(setup, runPlan), { state: 'incomplete', staged: staged.length }, 'the swap refuses the run')
  t.same(await liveSet(pipeline), ['SHARED01', 'SHARED02'], 'the live set is unchanged')
})

t.test('an abort stops the decision with its reason: the partitions after it are not staged', async (t) => {
  const setup = await prepare(t, 'decide-abort')
  const { runId, runPlan } = await producedRun(setup, 33)
  const controller = new AbortController()
  const reason = new Error('the group rebalanced')
  onRunPhase(t, (event) => { if (event.phase === 'staging' && event.partition === 0) controller.abort(reason) })

  // One decide thread stages the partitions in order, so that none after partition 0 can have been
  // staged before it (two threads may finish partition 1 first).
  const failure: unknown = await decide(t, setup, runPlan, [0, 1, 2, 3], 'member-a', { signal: controller.signal, decideThreads: 1 }).then(() => null, (err: unknown) => err)
  t.equal(failure, reason, 'rejected with the signal\'s reason itself')
  t.same([...(await setup.swap.stagedPartitions(runId)).keys()], [0], 'partition 0, staged before the abort, stays; no later one is staged')
})

t.test('a staging failure while another partition is decided and staged is the error thrown, after that partition settles, and no later partition is staged', async (t) => {
  const setup = await prepare(t, 'decide-fails')
  const { runId, runPlan } = await producedRun(setup, 34)
  // The first partition to stage fails once partition 2 is being read: by then partitions 0 and 1
  // have both gone to the two decide threads (three states: 2 is read while they are decided).
  let readingTwo = (): void => {}
  const failWhen = new Promise<void>((resolve) => { readingTwo = resolve })
  onRunPhase(t, (event) => { if (event.phase === 'reading' && event.partition === 2) readingTwo() })
  const failing = new FirstStageFails(setup, failWhen)
  const events = recordRunPhases(t)

  const failure: unknown = await decide(t, setup, runPlan, [0, 1, 2, 3], 'member-a', { decideThreads: 2, stateMemoryBytes: 1024 * MIB, swap: failing })
    .then(() => null, (err: unknown) => err)
  t.equal(failure, failing.error, 'rejected with the staging failure itself, not a later abort nor a timeout')
  const staged = [...(await setup.swap.stagedPartitions(runId)).keys()]
  t.equal(staged.length, 1, 'of partitions 0 and 1, the one whose staging did not fail finished and stands')
  t.ok(staged[0] === 0 || staged[0] === 1, `partition ${staged[0]} is 0 or 1`)
  t.same(events.filter((e) => e.phase === 'staging').map((e) => e.partition), staged, 'and it alone was staged: partition 2 was not decided')
  t.notOk(events.some((e) => e.phase === 'reading' && e.partition === 3), 'partition 3 was not read')
})

t.test('a run decided after a fresher set was applied is superseded at the swap, and its staging work dropped', async (t) => {
  const setup = await prepare(t, 'decide-stale')
  const { pipeline } = setup
  const baseline = await applyBaseline(t, setup)
  const runId = newRunId()
  const current = await produce(setup, FILES[0], runId, ['SHARED01', 'ONLYTWO1'])
  const fresher = plan(setup, newRunId(), [current, baseline.manifests[1], baseline.manifests[2]], 6n)
  const stale = plan(setup, runId, [current, baseline.manifests[1], baseline.manifests[2]], 5n)

  await decide(t, setup, fresher, [0, 1, 2, 3], 'member-a')
  t.equal((await swap(setup, fresher)).state, 'applied', 'the fresher set is applied first')
  const stats = await decide(t, setup, stale, [0, 1, 2, 3], 'member-b')
  t.equal(stats.staged, 4, 'the stale run is staged whole')
  t.same(await swap(setup, stale), { state: 'superseded', generation: fresher.runId })
  t.same(await liveSet(pipeline), ['ONLYTWO1', 'SHARED01', 'SHARED02'], 'the fresher set stays live')
  t.same(await pipeline.redis.keys(pipeline.keys.staging('*')), [], 'the stale run\'s staging set is deleted')
  t.same(await setup.swap.stagedPartitions(runId), new Map(), 'and so are its partition records')
})
