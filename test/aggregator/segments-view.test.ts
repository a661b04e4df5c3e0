import t from 'tap'
import { SegmentsView, decideRuns } from '../../src/aggregator/segments-view.js'
import type { RunRecord, SegmentManifest, SegmentsRecord } from '../../src/shared/segments.js'

function run (runId: string, files: string[]): RunRecord {
  return { type: 'run', runId, files, requestedAt: new Date().toISOString(), source: 'admin' }
}

function manifest (runId: string, file: string, segmentId = `${runId}-${file}`): SegmentManifest {
  const producedAt = new Date().toISOString()
  return { type: 'segment', segmentId, runId, file, topic: file, fileBytes: 1, sha256: '0'.repeat(64), lines: 1, codes: 1, producedAt, partitions: [] }
}

/** A view fed the records in order, at offsets 0, 1, 2... like the one-partition topic. */
function viewOf (...records: SegmentsRecord[]): SegmentsView {
  const view = new SegmentsView()
  records.forEach((record, offset) => { view.apply(record, BigInt(offset)) })
  return view
}

t.test('a run is ready once every one of its files has a segment from that run', async (t) => {
  const view = new SegmentsView()
  view.apply(run('R1', ['a', 'b']), 0n)
  t.notOk(view.isReady('R1'))
  view.apply(manifest('R1', 'a'), 1n)
  t.notOk(view.isReady('R1'))
  view.apply(manifest('R0', 'b'), 2n)
  t.notOk(view.isReady('R1'), 'a segment from another run does not count')
  view.apply(manifest('R1', 'b'), 3n)
  t.ok(view.isReady('R1'))
  t.same(view.readyRuns(), ['R1'])
  t.equal(view.newestOffset('R1'), 3n)
})

t.test('the current segment of a file is its latest manifest, whatever its run', async (t) => {
  const view = viewOf(
    run('R1', ['a', 'b']),
    manifest('R0', 'a', 's1'),
    manifest('R1', 'a', 's2'),
    manifest('R1', 'b', 's3'),
    run('R2', ['a']),
    manifest('R2', 'a', 's4'))
  t.equal(view.current('a')?.manifest.segmentId, 's4')
  t.equal(view.current('a')?.offset, 5n)
  t.equal(view.current('b')?.manifest.segmentId, 's3', 'a file outside the run keeps its segment')
  t.equal(view.current('c'), undefined)
  t.same(view.readyRuns(), ['R1', 'R2'])
  t.equal(view.newestOffset('R1'), 3n)
})

t.test('a second manifest of a file in one run is ignored: the run and the file keep the first', async (t) => {
  const view = new SegmentsView()
  t.equal(view.apply(run('R1', ['a', 'b']), 0n), undefined)
  t.equal(view.apply(manifest('R1', 'a', 'first'), 1n), undefined)
  // the retry of a job whose worker died after writing the manifest above
  const ignored = view.apply(manifest('R1', 'a', 'late'), 2n)
  t.equal(ignored?.manifest.segmentId, 'first', 'apply names the manifest that stands')
  t.equal(ignored?.offset, 1n)
  t.equal(view.current('a')?.manifest.segmentId, 'first', 'the late one never becomes current')
  t.notOk(view.isReady('R1'), 'nor does it stand in for another file')
  view.apply(manifest('R1', 'b', 'b1'), 3n)
  t.ok(view.isReady('R1'))
  t.equal(view.newestOffset('R1'), 3n)
  view.apply(manifest('R2', 'a', 'next-run'), 4n)
  t.equal(view.current('a')?.manifest.segmentId, 'next-run', 'another run still replaces it')
})

t.test('a manifest without its run record does not make a run ready', async (t) => {
  const view = viewOf(manifest('R9', 'a'))
  t.same(view.readyRuns(), [])
  t.equal(view.current('a')?.manifest.runId, 'R9')
})

t.test('the ready run that completed last, with manifests newer than the applied set, is applied', async (t) => {
  const ready = (...runs: Array<[string, bigint]>): Array<{ runId: string, newestOffset: bigint }> =>
    runs.map(([runId, newestOffset]) => ({ runId, newestOffset }))
  t.same(decideRuns(ready(['R1', 3n], ['R2', 5n], ['R3', 7n]), null, new Set()), { apply: 'R3', supersede: [] })
  t.same(decideRuns(ready(['R1', 3n], ['R2', 5n], ['R3', 7n]), 5n, new Set(['R2'])), { apply: 'R3', supersede: ['R1'] })
  t.same(decideRuns(ready(['R1', 3n], ['R2', 5n]), 7n, new Set()), { apply: null, supersede: ['R1', 'R2'] }, 'runs whose data is applied are superseded')
  t.same(decideRuns(ready(['R1', 3n], ['R2', 5n]), 5n, new Set(['R2'])), { apply: null, supersede: ['R1'] }, 'finished runs are left alone')
  t.same(decideRuns(ready(['R1', 3n], ['R3', 9n]), 5n, new Set(['R3'])), { apply: null, supersede: ['R1'] }, 'a failed newer run is not retried')
  t.same(decideRuns(ready(['RA', 6n], ['RB', 4n]), 4n, new Set(['RB'])), { apply: 'RA', supersede: [] },
    'a run requested before the applied one, whose manifests landed after it, is applied, not superseded')
  t.same(decideRuns(ready(['RA', 6n], ['RB', 8n]), null, new Set()), { apply: 'RB', supersede: [] }, 'ordered by manifests, not by run ids')
})
