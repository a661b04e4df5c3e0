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

export const RunFile = Type.Object({
  file: Type.String({ examples: ['couponbase1.gz'] }),
  jobId: Type.String(),
  state: Type.String({ description: 'BullMQ job state: waiting, active, completed, failed, delayed…' }),
  progress: Nullable(IngestProgress),
  attemptsMade: Type.Integer(),
  failedReason: Nullable(Type.String()),
  segmentId: Nullable(Type.String({ description: 'the segment the file produced, once complete' }))
})
export type RunFile = Static<typeof RunFile>

export const RunResult = Type.Object({
  state: Type.Union([Type.Literal('applied'), Type.Literal('failed'), Type.Literal('superseded')], {
    description: 'applied: swapped in; failed: nothing swapped (see error); superseded: a set from newer segments was applied first'
  }),
  appliedAt: Nullable(Type.String({ format: 'date-time' })),
  validCount: Nullable(Type.Integer()),
  swapMs: Nullable(Type.Number()),
  error: Nullable(Type.String())
}, { description: 'What the aggregator did with the run' })
export type RunResult = Static<typeof RunResult>

export const Run = Type.Object({
  runId: Type.String(),
  state: Type.String({ description: 'BullMQ state of the run (the parent job of the flow)' }),
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
