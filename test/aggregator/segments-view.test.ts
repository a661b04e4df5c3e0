import t from 'tap'
import { SegmentsView, decideRuns } from '../../src/aggregator/segments-view.js'
import type { RunRecord, SegmentManifest } from '../../src/shared/segments.js'

function run (runId: string, files: string[]): RunRecord {
  return { type: 'run', runId, files, requestedAt: new Date().toISOString(), source: 'admin' }
}

function manifest (runId: string, file: string, segmentId = `${runId}-${file}`): SegmentManifest {
  const producedAt = new Date().toISOString()
  return { type: 'segment', segmentId, runId, file, topic: file, fileBytes: 1, sha256: '0'.repeat(64), lines: 1, codes: 1, producedAt, partitions: [] }
}

t.test('a run is ready once every one of its files has a segment from that run', async (t) => {
  const view = new SegmentsView()
  view.apply(run('R1', ['a', 'b']))
  t.notOk(view.isReady('R1'))
  view.apply(manifest('R1', 'a'))
  t.notOk(view.isReady('R1'))
  view.apply(manifest('R0', 'b'))
  t.notOk(view.isReady('R1'), 'a segment from another run does not count')
  view.apply(manifest('R1', 'b'))
  t.ok(view.isReady('R1'))
  t.same(view.readyRuns(), ['R1'])
})

t.test('the current segment of a file is its latest manifest, whatever its run', async (t) => {
  const view = new SegmentsView()
  view.apply(run('R1', ['a', 'b']))
  view.apply(manifest('R1', 'a', 's1'))
  view.apply(manifest('R1', 'a', 's2'))
  view.apply(manifest('R1', 'b', 's3'))
  view.apply(run('R2', ['a']))
  view.apply(manifest('R2', 'a', 's4'))
  t.equal(view.current('a')?.segmentId, 's4')
  t.equal(view.current('b')?.segmentId, 's3', 'a file outside the run keeps its segment')
  t.equal(view.current('c'), undefined)
  t.same(view.readyRuns(), ['R1', 'R2'])
})

t.test('a manifest without its run record does not make a run ready', async (t) => {
  const view = new SegmentsView()
  view.apply(manifest('R9', 'a'))
  t.same(view.readyRuns(), [])
  t.equal(view.current('a')?.runId, 'R9')
})

t.test('only the newest ready run newer than the generation is applied', async (t) => {
  t.same(decideRuns(['R1', 'R2', 'R3'], null, new Set()), { apply: 'R3', supersede: [] })
  t.same(decideRuns(['R1', 'R2', 'R3'], 'R2', new Set()), { apply: 'R3', supersede: ['R1'] })
  t.same(decideRuns(['R1', 'R2'], 'R3', new Set()), { apply: null, supersede: ['R1', 'R2'] }, 'older runs are superseded, never applied')
  t.same(decideRuns(['R1', 'R2'], 'R2', new Set(['R1'])), { apply: null, supersede: [] }, 'the applied run and finished runs are left alone')
  t.same(decideRuns(['R1', 'R3'], 'R2', new Set(['R3'])), { apply: null, supersede: ['R1'] }, 'a failed newer run is not retried')
})
