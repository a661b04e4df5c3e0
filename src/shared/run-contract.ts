// What a run is, declared once as TypeBox schemas (DESIGN sections 4, 7 and 8): who asked for it,
// the progress of each file's job, and the views GET /admin/runs serves. The schemas validate and
// document the API; the types every role uses are their Static<> forms, never a second copy.
import { Type, type Static, type TSchema } from 'typebox'

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

/** Who started a run: an operator (POST /admin/ingest), the daily scheduler, or `coupons ingest`. */
export const RunSource = Type.Union([Type.Literal('admin'), Type.Literal('schedule'), Type.Literal('cli')])
export type RunSource = Static<typeof RunSource>

/** A file job's progress, reported by the ingest a few times a second. */
export const IngestProgress = Type.Object({
  percent: Type.Number({ minimum: 0, maximum: 100 }),
  bytesRead: Type.Integer({ description: 'compressed bytes read so far' }),
  bytesTotal: Type.Integer({ description: 'compressed size of the file' }),
  lines: Type.Integer(),
  codes: Type.Integer()
})
export type IngestProgress = Static<typeof IngestProgress>

/** What became of one attempt of a file job. */
export const AttemptOutcome = Type.Union([
  Type.Literal('running'),
  Type.Literal('produced'),
  Type.Literal('adopted'),
  Type.Literal('failed'),
  Type.Literal('interrupted')
], {
  description: 'running: in progress (or its worker died: see the file state); produced: wrote its segment and manifest; ' +
    'adopted: found the manifest an earlier attempt of the same job had written and took it instead of producing the file again; ' +
    'failed: see error; interrupted: its worker died or closed before it finished (nothing it sent counts: it wrote no manifest)'
})
export type AttemptOutcome = Static<typeof AttemptOutcome>

/** One start of a file job, as recorded by the attempt itself in the job's data. */
export const IngestAttempt = Type.Object({
  attempt: Type.Integer({ minimum: 1, description: '1 for the first start; a start after a stalled worker counts too' }),
  segmentId: Type.String({ description: 'the segment this attempt produced (or adopted)' }),
  startedAt: Type.String({ format: 'date-time' }),
  finishedAt: Nullable(Type.String({ format: 'date-time' })),
  outcome: AttemptOutcome,
  error: Nullable(Type.String())
})
export type IngestAttempt = Static<typeof IngestAttempt>

/** A segment an applied set was computed from. */
export const AppliedSegment = Type.Object({
  file: Type.String(),
  segmentId: Type.String(),
  runId: Type.String({ description: 'the run that produced it (another run for a file this run did not ingest)' })
})
export type AppliedSegment = Static<typeof AppliedSegment>

export const RunFile = Type.Object({
  file: Type.String({ examples: ['couponbase1.gz'] }),
  jobId: Type.String(),
  state: Type.String({
    description: 'BullMQ job state (waiting, active, completed, failed, delayed…), or stalled: active, but the job\'s lock expired ' +
      'because its worker died; a live worker retries it at its next stalled-job check'
  }),
  progress: Nullable(IngestProgress),
  attemptsMade: Type.Integer(),
  failedReason: Nullable(Type.String({ description: 'why the job failed; null unless its state is failed (each attempt\'s error is in attempts)' })),
  segmentId: Nullable(Type.String({ description: 'the segment of the job\'s latest attempt; its result once complete' })),
  appliedSegmentId: Nullable(Type.String({ description: 'the segment of this file that the run\'s swap was computed from; null until applied' })),
  attempts: Type.Array(IngestAttempt)
})
export type RunFile = Static<typeof RunFile>

export const RunResult = Type.Object({
  state: Type.Union([Type.Literal('applied'), Type.Literal('failed'), Type.Literal('superseded')], {
    description: 'applied: swapped in; failed: nothing swapped (see error); superseded: a set from newer segments was applied first'
  }),
  appliedAt: Nullable(Type.String({ format: 'date-time' })),
  validCount: Nullable(Type.Integer()),
  swapMs: Nullable(Type.Number()),
  error: Nullable(Type.String()),
  segments: Type.Array(AppliedSegment, { description: 'the segment of every configured file that the applied set was computed from; empty unless applied' }),
  deciders: Type.Record(Type.String(), Type.Array(Type.Integer({ minimum: 0 })), {
    description: 'aggregator instance -> the partitions it decided for the applied set (instances of one AGGREGATOR_GROUP_ID split them); empty unless applied'
  }),
  attempts: Nullable(Type.Integer({ minimum: 1, description: 'attempts the aggregator instance that failed the run made (AGGREGATOR_MAX_ATTEMPTS for transient failures); null unless failed' }))
}, { description: 'What the aggregator did with the run' })
export type RunResult = Static<typeof RunResult>

export const Run = Type.Object({
  runId: Type.String(),
  state: Type.String({ description: 'BullMQ state of the run (the parent job of the flow), or stalled while one of its files is' }),
  source: RunSource,
  requestedAt: Type.String({ format: 'date-time' }),
  finishedAt: Nullable(Type.String({ format: 'date-time' })),
  files: Type.Array(RunFile),
  result: Nullable(RunResult)
})
export type Run = Static<typeof Run>

export const Schedule = Type.Object({
  pattern: Nullable(Type.String({ description: 'cron pattern of the daily run; null when off' })),
  tz: Type.String(),
  next: Nullable(Type.String({ format: 'date-time', description: 'next scheduled run' }))
})
export type Schedule = Static<typeof Schedule>

export const StartedRun = Type.Object({
  runId: Type.String(),
  jobs: Type.Array(Type.Object({ id: Type.String(), file: Type.String() }))
}, { description: 'The run is queued; follow it at GET /admin/runs/{runId}' })
export type StartedRun = Static<typeof StartedRun>
