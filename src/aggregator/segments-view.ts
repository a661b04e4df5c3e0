// What the aggregator knows from the `coupons.segments` topic (DESIGN sections 4 and 5): the runs,
// and per file its latest complete segment. The topic has one partition, so record order is time
// order and the latest manifest of a file is its current segment. Pure logic, no I/O: the
// aggregator feeds it records and asks what to do next.
import type { RunRecord, SegmentManifest, SegmentsRecord } from '../shared/segments.js'
import { compareRunIds } from '../shared/segments.js'

export class SegmentsView {
  readonly #runs = new Map<string, RunRecord>()
  /** runId -> file -> the run's (latest) manifest of that file */
  readonly #runManifests = new Map<string, Map<string, SegmentManifest>>()
  /** file -> its current segment */
  readonly #current = new Map<string, SegmentManifest>()

  apply (record: SegmentsRecord): void {
    if (record.type === 'run') {
      this.#runs.set(record.runId, record)
      return
    }
    this.#current.set(record.file, record)
    let manifests = this.#runManifests.get(record.runId)
    if (manifests === undefined) {
      manifests = new Map()
      this.#runManifests.set(record.runId, manifests)
    }
    manifests.set(record.file, record)
  }

  run (runId: string): RunRecord | undefined {
    return this.#runs.get(runId)
  }

  /** A run is ready when every file it asked for has a complete segment from that run. */
  isReady (runId: string): boolean {
    const run = this.#runs.get(runId)
    if (run === undefined) return false
    const manifests = this.#runManifests.get(runId)
    return run.files.every((file) => manifests?.has(file) === true)
  }

  /** Ready runs, oldest first. */
  readyRuns (): string[] {
    return [...this.#runs.keys()].filter((runId) => this.isReady(runId)).sort(compareRunIds)
  }

  /** The current segment of each given file, or undefined for a file never ingested. */
  current (file: string): SegmentManifest | undefined {
    return this.#current.get(file)
  }
}

export interface RunDecision {
  /** the run to compute and swap in now, if any */
  apply: string | null
  /** ready runs that can never be applied because a newer one was (or is about to be) */
  supersede: string[]
}

/**
 * What to do with the ready runs, given the applied generation and the runs that already have a
 * result (applied, failed or superseded). Only the newest ready run is computed: the set depends
 * on the current segments, not on which run completed them, so computing older ready runs first
 * would only be thrown away. Older ones are superseded once a newer run is applied.
 */
export function decideRuns (readyRuns: string[], generation: string | null, finished: ReadonlySet<string>): RunDecision {
  const open = readyRuns.filter((runId) => !finished.has(runId)).sort(compareRunIds)
  const supersede = generation === null ? [] : open.filter((runId) => compareRunIds(runId, generation) < 0)
  const newer = generation === null ? open : open.filter((runId) => compareRunIds(runId, generation) > 0)
  return { apply: newer.length > 0 ? newer[newer.length - 1] : null, supersede }
}
