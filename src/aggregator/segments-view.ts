// What the aggregator knows from the `coupons.segments` topic (DESIGN sections 4 and 5): the runs,
// and per file its latest complete segment. The topic has one partition, so record order is time
// order: the latest manifest of a file is its current segment, and a manifest's offset says how
// fresh its data is. Pure logic, no I/O: the aggregator feeds it records and asks what to do next.
//
// One run produces each of its files once: the first manifest of a (run, file) is the one. A later
// one comes from an attempt that went on after it lost its job (a worker that died after writing
// the manifest but before its job completed, then a retry) and is ignored, so a run's set is never
// built from one attempt while its record names another.
import type { RunRecord, SegmentManifest, SegmentsRecord } from '../shared/segments.js'
import { compareRunIds } from '../shared/segments.js'

/** A manifest and its offset in `coupons.segments`. */
export interface PlacedManifest {
  manifest: SegmentManifest
  offset: bigint
}

export class SegmentsView {
  readonly #runs = new Map<string, RunRecord>()
  /** runId -> the offset of its run record */
  readonly #runOffsets = new Map<string, bigint>()
  /** runId -> file -> the run's (first) manifest of that file */
  readonly #runManifests = new Map<string, Map<string, PlacedManifest>>()
  /** file -> its current segment */
  readonly #current = new Map<string, PlacedManifest>()

  /**
   * Takes the next record of the topic. Returns the earlier manifest of the same run and file when
   * this one is ignored as a duplicate (for the caller to log), undefined otherwise.
   */
  apply (record: SegmentsRecord, offset: bigint): PlacedManifest | undefined {
    if (record.type === 'run') {
      this.#runs.set(record.runId, record)
      this.#runOffsets.set(record.runId, offset)
      return undefined
    }
    let manifests = this.#runManifests.get(record.runId)
    if (manifests === undefined) {
      manifests = new Map()
      this.#runManifests.set(record.runId, manifests)
    }
    const first = manifests.get(record.file)
    if (first !== undefined) return first
    const placed = { manifest: record, offset }
    this.#current.set(record.file, placed)
    manifests.set(record.file, placed)
    return undefined
  }

  /** A run is ready when every file it asked for has a complete segment from that run. */
  isReady (runId: string): boolean {
    const run = this.#runs.get(runId)
    if (run === undefined) return false
    const manifests = this.#runManifests.get(runId)
    return run.files.every((file) => manifests?.has(file) === true)
  }

  /** Whether the run has a manifest of `file` (the first one stands). */
  hasManifest (runId: string, file: string): boolean {
    return this.#runManifests.get(runId)?.has(file) === true
  }

  /** Ready runs, oldest first. */
  readyRuns (): string[] {
    return [...this.#runs.keys()].filter((runId) => this.isReady(runId)).sort(compareRunIds)
  }

  /** The offset of the newest manifest of a run's files, or null when it has none. */
  newestOffset (runId: string): bigint | null {
    const run = this.#runs.get(runId)
    const manifests = this.#runManifests.get(runId)
    let newest: bigint | null = null
    for (const file of run?.files ?? []) {
      const offset = manifests?.get(file)?.offset
      if (offset !== undefined && (newest === null || offset > newest)) newest = offset
    }
    return newest
  }

  /** A run's record, if seen. */
  run (runId: string): RunRecord | undefined {
    return this.#runs.get(runId)
  }

  /** Every run seen, with the offset of its run record. */
  runOffsets (): ReadonlyMap<string, bigint> {
    return this.#runOffsets
  }

  /** The current segment of a file and its offset, or undefined for a file never ingested. */
  current (file: string): PlacedManifest | undefined {
    return this.#current.get(file)
  }
}

export interface ReadyRun {
  runId: string
  /** offset of the newest manifest of the run's files */
  newestOffset: bigint
}

export interface RunDecision {
  /** the run whose completion triggers computing and swapping in the current segments now */
  apply: string | null
  /** ready runs whose every segment is already covered by the applied set */
  supersede: string[]
}

/**
 * What to do with the ready runs that have no result yet, given the coupons.segments offset of
 * the newest manifest in the applied set. Freshness is measured by manifest offsets, not by run
 * ids: a run requested earlier may complete later, and its segments are then newer data than the
 * applied set. A run all of whose manifests are at or below the applied offset adds nothing (each
 * of its segments is applied or was replaced by a newer segment of its file that is): it is
 * superseded. Otherwise the set is computed once, from the current segments of every file, for
 * the run that completed last; the runs it covers are superseded afterwards.
 */
export function decideRuns (ready: ReadyRun[], appliedOffset: bigint | null, finished: ReadonlySet<string>): RunDecision {
  const open = ready.filter(({ runId }) => !finished.has(runId))
  const covered = (run: ReadyRun): boolean => appliedOffset !== null && run.newestOffset <= appliedOffset
  const supersede = open.filter(covered).map(({ runId }) => runId).sort(compareRunIds)
  let apply: ReadyRun | null = null
  for (const run of open) {
    if (covered(run)) continue
    if (apply === null || run.newestOffset > apply.newestOffset ||
      (run.newestOffset === apply.newestOffset && compareRunIds(run.runId, apply.runId) > 0)) apply = run
  }
  return { apply: apply?.runId ?? null, supersede }
}
