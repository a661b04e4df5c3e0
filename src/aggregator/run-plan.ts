// The plan of one aggregation (issue 14): which segment of each configured file a run's set is
// computed from, and with how many partitions. The coordinator writes it to Redis; every
// aggregator instance reads it and decides the partitions it owns. It is fixed for the run: all
// instances compute from the same segments, so a partition decided twice (by an instance that lost
// it and the one that got it) stages the same codes. Pure logic, no I/O.
import { createHash } from 'node:crypto'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { CouponsError } from '../shared/errors.js'
import { PartitionRange } from '../shared/segments.js'
import type { SegmentRead } from './partition-reader.js'
import type { PlacedManifest } from './segments-view.js'

export const PlannedSegment = Type.Object({
  file: Type.String(),
  /** bit of this file in the files-seen mask: its index in COUPON_FILES */
  fileIndex: Type.Integer({ minimum: 0 }),
  topic: Type.String(),
  segmentId: Type.String(),
  /** the run that produced the segment (may be older than the plan's run) */
  runId: Type.String(),
  recordFormat: Type.Optional(Type.String()),
  partitions: Type.Array(PartitionRange)
})
export type PlannedSegment = Static<typeof PlannedSegment>

export const RunPlan = Type.Object({
  runId: Type.String(),
  /** partitions every segment was produced with: the partitions to decide and stage */
  partitions: Type.Integer({ minimum: 1 }),
  minFiles: Type.Integer({ minimum: 1 }),
  /** coupons.segments offset of the newest manifest of the plan: the set's freshness */
  segmentsOffset: Type.String({ pattern: '^[0-9]+$' }),
  segments: Type.Array(PlannedSegment, { minItems: 1 })
})
export type RunPlan = Static<typeof RunPlan>

/**
 * The plan of `runId` from the current segment of every configured file. Throws (not retriable)
 * when a file has no segment yet (a partial set would be published as complete) or when the
 * segments were produced with different partition counts (KAFKA_PARTITIONS changed between runs
 * of different files: a full run re-partitions every file).
 */
export function planRun (runId: string, files: readonly string[], current: (file: string) => PlacedManifest | undefined, minFiles: number): RunPlan {
  const missing = files.filter((file) => current(file) === undefined)
  if (missing.length > 0) {
    throw new CouponsError('AGGREGATOR_FILES_MISSING',
      `${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no complete segment yet; ` +
      'ingest them (POST /admin/ingest) before a partial run can be applied')
  }
  const placed = files.map((file) => current(file) as PlacedManifest)
  const counts = new Set(placed.map(({ manifest }) => manifest.partitions.length))
  if (counts.size > 1) {
    throw new CouponsError('AGGREGATOR_PARTITIONS_MISMATCH',
      `the current segments were produced with different partition counts (${placed.map(({ manifest }) => `${manifest.file}: ${manifest.partitions.length}`).join(', ')}); ` +
      'KAFKA_PARTITIONS changed between runs: run a full ingest (all files) to re-partition every file')
  }
  const partitions = placed[0].manifest.partitions.length
  for (const { manifest } of placed) {
    const numbered = manifest.partitions.every((range, i) => range.partition === i)
    if (!numbered) throw new CouponsError('AGGREGATOR_BAD_MANIFEST', `${manifest.file}: segment ${manifest.segmentId} does not list partitions 0..${partitions - 1} in order`)
  }
  let newest = -1n
  for (const { offset } of placed) if (offset > newest) newest = offset
  return {
    runId,
    partitions,
    minFiles,
    segmentsOffset: newest.toString(),
    segments: placed.map(({ manifest }, fileIndex) => ({
      file: manifest.file,
      fileIndex,
      topic: manifest.topic,
      segmentId: manifest.segmentId,
      runId: manifest.runId,
      ...(manifest.recordFormat === undefined ? {} : { recordFormat: manifest.recordFormat }),
      partitions: manifest.partitions
    }))
  }
}

export function encodePlan (plan: RunPlan): string {
  return JSON.stringify(plan)
}

/**
 * The plan's id: its run and a digest of its content. Its partitions are staged under it, so that
 * a run planned again from other segments (a newer segment of a file became current meanwhile)
 * never counts partitions decided from the earlier plan.
 */
export function planIdOf (plan: RunPlan): string {
  return `${plan.runId}.${createHash('sha256').update(encodePlan(plan)).digest('hex').slice(0, 12)}`
}

export function decodePlan (body: string): RunPlan {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    parsed = undefined
  }
  if (!Value.Check(RunPlan, parsed)) throw new CouponsError('AGGREGATOR_BAD_PLAN', `the run plan in Redis has an unknown shape: ${body.slice(0, 200)}`)
  return parsed
}

/** What to read of each file's segment in one partition. */
export function readsOf (plan: RunPlan, partition: number): SegmentRead[] {
  return plan.segments.map((segment) => ({
    file: segment.file,
    fileIndex: segment.fileIndex,
    topic: segment.topic,
    segmentId: segment.segmentId,
    recordFormat: segment.recordFormat,
    range: segment.partitions[partition]
  }))
}

/** Codes of every file in one partition: the state's size. */
export function expectedCodes (plan: RunPlan, partition: number): number {
  return plan.segments.reduce((sum, segment) => sum + segment.partitions[partition].codes, 0)
}
