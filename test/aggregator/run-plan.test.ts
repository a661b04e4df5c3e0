import t from 'tap'
import { decodePlan, encodePlan, expectedCodes, planRun, readsOf, type RunPlan } from '../../src/aggregator/run-plan.js'
import type { PlacedManifest } from '../../src/aggregator/segments-view.js'
import type { PartitionRange, SegmentManifest } from '../../src/shared/segments.js'

const FILES = ['couponbase1.gz', 'couponbase2.gz', 'couponbase3.gz']

function range (partition: number, codes: number, firstOffset: string | null = codes > 0 ? String(10 * partition) : null): PartitionRange {
  return { partition, firstOffset, lastOffset: firstOffset, records: codes > 0 ? 1 : 0, codes }
}

function manifest (file: string, runId: string, codes: number[], extra: Partial<SegmentManifest> = {}): SegmentManifest {
  return {
    type: 'segment',
    segmentId: `${runId}-${file}`,
    runId,
    file,
    topic: `p.${file}`,
    fileBytes: 1,
    sha256: '0'.repeat(64),
    lines: 1,
    codes: codes.reduce((sum, n) => sum + n, 0),
    producedAt: new Date(0).toISOString(),
    partitions: codes.map((n, p) => range(p, n)),
    ...extra
  }
}

/** The current-segment lookup of a SegmentsView holding these manifests at these offsets. */
function currentOf (placed: Record<string, PlacedManifest>): (file: string) => PlacedManifest | undefined {
  return (file) => placed[file]
}

function threeFiles (): Record<string, PlacedManifest> {
  return {
    [FILES[0]]: { manifest: manifest(FILES[0], 'R1', [1, 2, 3]), offset: 4n },
    [FILES[1]]: { manifest: manifest(FILES[1], 'R2', [4, 0, 6], { recordFormat: 'packed' }), offset: 9n },
    [FILES[2]]: { manifest: manifest(FILES[2], 'R1', [7, 8, 9]), offset: 6n }
  }
}

t.test('plans the current segment of every file, in the order of the files, with the newest manifest offset', async (t) => {
  const plan = planRun('R2', FILES, currentOf(threeFiles()), 2)
  t.strictSame(plan, {
    runId: 'R2',
    partitions: 3,
    minFiles: 2,
    segmentsOffset: '9',
    segments: [
      { file: FILES[0], fileIndex: 0, topic: 'p.couponbase1.gz', segmentId: 'R1-couponbase1.gz', runId: 'R1', partitions: [range(0, 1), range(1, 2), range(2, 3)] },
      { file: FILES[1], fileIndex: 1, topic: 'p.couponbase2.gz', segmentId: 'R2-couponbase2.gz', runId: 'R2', recordFormat: 'packed', partitions: [range(0, 4), range(1, 0), range(2, 6)] },
      { file: FILES[2], fileIndex: 2, topic: 'p.couponbase3.gz', segmentId: 'R1-couponbase3.gz', runId: 'R1', partitions: [range(0, 7), range(1, 8), range(2, 9)] }
    ]
  }, 'a lines segment has no recordFormat; a segment keeps the run that produced it')
})

t.test('a file\'s index is its place in the files list, whatever the order of the manifests', async (t) => {
  const placed = threeFiles()
  const files = [FILES[2], FILES[0], FILES[1]]
  const plan = planRun('R2', files, currentOf(placed), 2)
  t.same(plan.segments.map(({ file, fileIndex }) => ({ file, fileIndex })), files.map((file, fileIndex) => ({ file, fileIndex })))
})

t.test('the plan\'s freshness is the newest offset of its manifests, wherever that file is in the list', async (t) => {
  const placed = threeFiles()
  placed[FILES[0]] = { ...placed[FILES[0]], offset: 12n }
  t.equal(planRun('R3', FILES, currentOf(placed), 2).segmentsOffset, '12')
  placed[FILES[2]] = { ...placed[FILES[2]], offset: 100n }
  t.equal(planRun('R3', FILES, currentOf(placed), 2).segmentsOffset, '100')
})

t.test('fails with AGGREGATOR_FILES_MISSING, naming them, when files have no segment yet', async (t) => {
  const placed = threeFiles()
  delete placed[FILES[1]]
  t.throws(() => planRun('R2', FILES, currentOf(placed), 2), {
    name: 'CouponsError',
    code: 'AGGREGATOR_FILES_MISSING',
    retriable: false,
    message: 'couponbase2.gz has no complete segment yet; ingest them (POST /admin/ingest) before a partial run can be applied'
  })
  delete placed[FILES[2]]
  t.throws(() => planRun('R2', FILES, currentOf(placed), 2), {
    code: 'AGGREGATOR_FILES_MISSING',
    message: 'couponbase2.gz, couponbase3.gz have no complete segment yet; ingest them (POST /admin/ingest) before a partial run can be applied'
  })
})

t.test('fails with AGGREGATOR_PARTITIONS_MISMATCH, naming each file\'s count, when the segments were produced with different partition counts', async (t) => {
  const placed = threeFiles()
  placed[FILES[1]] = { manifest: manifest(FILES[1], 'R2', [4, 0, 6, 1]), offset: 9n }
  t.throws(() => planRun('R2', FILES, currentOf(placed), 2), {
    name: 'CouponsError',
    code: 'AGGREGATOR_PARTITIONS_MISMATCH',
    retriable: false,
    message: 'the current segments were produced with different partition counts (couponbase1.gz: 3, couponbase2.gz: 4, couponbase3.gz: 3); ' +
      'KAFKA_PARTITIONS changed between runs: run a full ingest (all files) to re-partition every file'
  })
})

t.test('fails with AGGREGATOR_BAD_MANIFEST when a manifest does not list its partitions in order', async (t) => {
  const placed = threeFiles()
  const swapped = manifest(FILES[2], 'R1', [7, 8, 9])
  swapped.partitions = [swapped.partitions[1], swapped.partitions[0], swapped.partitions[2]]
  placed[FILES[2]] = { manifest: swapped, offset: 6n }
  t.throws(() => planRun('R2', FILES, currentOf(placed), 2), { code: 'AGGREGATOR_BAD_MANIFEST', message: 'couponbase3.gz: segment R1-couponbase3.gz does not list partitions 0..2 in order' })
})

t.test('a plan decodes to what was encoded', async (t) => {
  const plan = planRun('R2', FILES, currentOf(threeFiles()), 2)
  const body = encodePlan(plan)
  t.type(body, 'string')
  t.same(decodePlan(body), plan)
})

t.test('a plan of an unknown shape fails with AGGREGATOR_BAD_PLAN, quoting it', async (t) => {
  const plan = planRun('R2', FILES, currentOf(threeFiles()), 2)
  const bad: Array<[string, unknown]> = [
    ['no segments', { ...plan, segments: [] }],
    ['zero partitions', { ...plan, partitions: 0 }],
    ['an offset that is not a number', { ...plan, segmentsOffset: 'x9' }],
    ['a segment without its topic', { ...plan, segments: [{ ...plan.segments[0], topic: undefined }] }],
    ['not an object', 42]
  ]
  for (const [what, value] of bad) {
    const body = JSON.stringify(value)
    t.throws(() => decodePlan(body), { name: 'CouponsError', code: 'AGGREGATOR_BAD_PLAN', message: `the run plan in Redis has an unknown shape: ${body.slice(0, 200)}` }, what)
  }
  t.throws(() => decodePlan('{"runId":'), { name: 'CouponsError', code: 'AGGREGATOR_BAD_PLAN', message: 'the run plan in Redis has an unknown shape: {"runId":' }, 'not JSON at all')
})

t.test('readsOf gives each file\'s range of one partition, with its file index, topic, segment and format', async (t) => {
  const plan: RunPlan = planRun('R2', FILES, currentOf(threeFiles()), 2)
  t.same(readsOf(plan, 1), [
    { file: FILES[0], fileIndex: 0, topic: `p.${FILES[0]}`, segmentId: `R1-${FILES[0]}`, recordFormat: undefined, range: range(1, 2) },
    { file: FILES[1], fileIndex: 1, topic: `p.${FILES[1]}`, segmentId: `R2-${FILES[1]}`, recordFormat: 'packed', range: range(1, 0) },
    { file: FILES[2], fileIndex: 2, topic: `p.${FILES[2]}`, segmentId: `R1-${FILES[2]}`, recordFormat: undefined, range: range(1, 8) }
  ])
})

t.test('expectedCodes sums every file\'s codes in one partition', async (t) => {
  const plan = planRun('R2', FILES, currentOf(threeFiles()), 2)
  t.same([0, 1, 2].map((p) => expectedCodes(plan, p)), [1 + 4 + 7, 2 + 0 + 8, 3 + 6 + 9])
})
