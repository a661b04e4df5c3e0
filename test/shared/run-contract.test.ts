import t from 'tap'
import { Value } from 'typebox/value'
import { IngestProgress, Run, RunSource } from '../../src/shared/run-contract.js'
import { RunRecord, SegmentManifest } from '../../src/shared/segments.js'

t.test('a run is started by an operator, the scheduler or the CLI, and by nothing else', async (t) => {
  for (const source of ['admin', 'schedule', 'cli']) t.ok(Value.Check(RunSource, source), source)
  t.notOk(Value.Check(RunSource, 'cron'))
  const record = { type: 'run', runId: 'r1', files: ['couponbase1.gz'], requestedAt: '2025-01-01T00:00:00.000Z', source: 'schedule' }
  t.ok(Value.Check(RunRecord, record), 'the run record on coupons.segments uses the same sources')
  t.notOk(Value.Check(RunRecord, { ...record, source: 'cron' }))
})

t.test('a progress report is an IngestProgress only with all five figures', async (t) => {
  const progress = { percent: 42.5, bytesRead: 425, bytesTotal: 1000, lines: 30, codes: 29 }
  t.ok(Value.Check(IngestProgress, progress))
  t.notOk(Value.Check(IngestProgress, { percent: 42.5 }), 'a bare percentage is not')
  t.notOk(Value.Check(IngestProgress, { ...progress, percent: 101 }), 'nor more than 100 %')
  t.notOk(Value.Check(IngestProgress, 42), 'nor a number (BullMQ allows one)')
})

t.test('a run view nests its files and its result', async (t) => {
  const run = {
    runId: '20250101T030000000Z-0a0b0c0d',
    state: 'completed',
    source: 'admin',
    requestedAt: '2025-01-01T03:00:00.000Z',
    finishedAt: null,
    files: [{
      file: 'couponbase1.gz',
      jobId: 'j',
      state: 'completed',
      progress: null,
      attemptsMade: 1,
      failedReason: null,
      segmentId: 's2',
      appliedSegmentId: 's2',
      attempts: [
        { attempt: 1, segmentId: 's1', startedAt: '2025-01-01T03:00:01.000Z', finishedAt: null, outcome: 'interrupted', error: 'its worker stopped before it finished' },
        { attempt: 2, segmentId: 's2', startedAt: '2025-01-01T03:01:00.000Z', finishedAt: '2025-01-01T03:02:00.000Z', outcome: 'produced', error: null }
      ]
    }],
    result: { state: 'applied', appliedAt: '2025-01-01T03:05:00.000Z', validCount: 8, swapMs: 12, error: null, segments: [{ file: 'couponbase1.gz', segmentId: 's2', runId: '20250101T030000000Z-0a0b0c0d' }], deciders: { 'agg-1': [0] }, attempts: null }
  }
  t.ok(Value.Check(Run, run))
  t.notOk(Value.Check(Run, { ...run, result: { ...run.result, state: 'done' } }), 'a result state outside applied, failed, superseded is refused')
  t.notOk(Value.Check(Run, { ...run, result: { ...run.result, deciders: { 'agg-1': [-1] } } }), 'a decider\'s partitions are partition numbers')
  const attempt = run.files[0].attempts[1]
  t.notOk(Value.Check(Run, { ...run, files: [{ ...run.files[0], attempts: [{ ...attempt, outcome: 'lost' }] }] }), 'an attempt outcome outside the five is refused')
})

t.test('a manifest records the identity of the file it read, and one written before that field existed still decodes', async (t) => {
  const manifest = {
    type: 'segment',
    segmentId: 's',
    runId: 'r',
    file: 'couponbase1.gz',
    topic: 'couponbase1.gz',
    fileBytes: 10,
    sha256: '0'.repeat(64),
    lines: 1,
    codes: 1,
    producedAt: '2025-01-01T03:00:00.000Z',
    partitions: []
  }
  t.ok(Value.Check(SegmentManifest, manifest), 'without fileIdentity')
  t.ok(Value.Check(SegmentManifest, { ...manifest, fileIdentity: { dev: 2049, ino: 1234567, size: 10, mtimeMs: 1735700000000.5 } }), 'with it')
  t.notOk(Value.Check(SegmentManifest, { ...manifest, fileIdentity: { dev: 2049, ino: 1234567 } }), 'never half of it')
})
