// The records of the `coupons.segments` topic: the contract between the ingest and the aggregator
// (DESIGN section 4). Data records without a manifest do not exist for the aggregator.
import { randomBytes } from 'node:crypto'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { CouponsError } from './errors.js'
import { RunSource } from './run-contract.js'

/** Header of every data record: the segment it belongs to. */
export const SEGMENT_HEADER = 'segment'

/**
 * How a segment's data records hold their codes (the manifest's `recordFormat`):
 * - `lines`: the codes as text, joined by LF (manifests without `recordFormat` are of this format);
 * - `packed`: 8 bytes a code, `hi` then `lo` of code-packing as big-endian uint32 (PACKED_CODE_BYTES),
 *   already parsed and checked by the producer, so the aggregator copies them instead of scanning
 *   text again, and about a fifth fewer bytes go through Kafka;
 * - `words` (the default since issue 15): 8 bytes a code, code-packing's sort word (hi | lo | four
 *   zero file bits) as a little-endian uint64, so the aggregator only sets the file bits of each
 *   word and puts it in its partition state (`packed` cost it a parse per code).
 * An aggregator refuses a format it does not know (AGGREGATOR_RECORD_FORMAT) rather than guess.
 */
export const RECORD_FORMATS = ['lines', 'packed', 'words'] as const
export type RecordFormat = typeof RECORD_FORMATS[number]
/** bytes of one code in `packed` and `words` records */
export const PACKED_CODE_BYTES = 8

export const RunRecord = Type.Object({
  type: Type.Literal('run'),
  runId: Type.String(),
  files: Type.Array(Type.String(), { minItems: 1 }),
  requestedAt: Type.String({ description: 'ISO 8601' }),
  source: RunSource
})
export type RunRecord = Static<typeof RunRecord>

export const PartitionRange = Type.Object({
  partition: Type.Integer({ minimum: 0 }),
  /** offset of the segment's first data record in this partition; null when it has none */
  firstOffset: Type.Union([Type.String(), Type.Null()]),
  lastOffset: Type.Union([Type.String(), Type.Null()]),
  records: Type.Integer({ minimum: 0 }),
  codes: Type.Integer({ minimum: 0 })
})
export type PartitionRange = Static<typeof PartitionRange>

/**
 * The file a segment was read from, as fstat showed it when it was opened (and, unchanged, when the
 * read ended): which inode on which device, its size and modification time.
 */
export const FileIdentity = Type.Object({
  dev: Type.Number(),
  ino: Type.Number(),
  size: Type.Integer({ minimum: 0 }),
  mtimeMs: Type.Number()
})
export type FileIdentity = Static<typeof FileIdentity>

export const SegmentManifest = Type.Object({
  type: Type.Literal('segment'),
  segmentId: Type.String(),
  runId: Type.String(),
  file: Type.String(),
  topic: Type.String(),
  fileBytes: Type.Integer({ minimum: 0 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  lines: Type.Integer({ minimum: 0 }),
  codes: Type.Integer({ minimum: 0 }),
  producedAt: Type.String({ description: 'ISO 8601' }),
  /** absent from manifests written before it existed */
  fileIdentity: Type.Optional(FileIdentity),
  /**
   * RECORD_FORMATS; absent = `lines` (manifests written before it existed). Any string is accepted
   * here so that an aggregator meeting a newer format fails the run naming it instead of ignoring
   * the manifest.
   */
  recordFormat: Type.Optional(Type.String()),
  partitions: Type.Array(PartitionRange)
})
export type SegmentManifest = Static<typeof SegmentManifest>

export type SegmentsRecord = RunRecord | SegmentManifest

/**
 * Run ids sort by time as plain strings ("never swap an older run over a newer one" is a string
 * comparison): the UTC time to the millisecond, then random bits against collisions.
 */
export function newRunId (now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:.]/g, '')
  return `${stamp}-${randomBytes(4).toString('hex')}`
}

export function compareRunIds (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

export function encodeSegmentsRecord (record: SegmentsRecord): Buffer {
  return Buffer.from(JSON.stringify(record))
}

export function decodeSegmentsRecord (value: Buffer | null): SegmentsRecord {
  let parsed: unknown
  try {
    parsed = JSON.parse(value?.toString('utf8') ?? 'null')
  } catch (err) {
    throw new CouponsError('SEGMENTS_RECORD_INVALID', 'a coupons.segments record is not JSON', { cause: err })
  }
  if (Value.Check(RunRecord, parsed) || Value.Check(SegmentManifest, parsed)) return parsed
  throw new CouponsError('SEGMENTS_RECORD_INVALID', `a coupons.segments record has an unknown shape: ${JSON.stringify(parsed).slice(0, 200)}`)
}
