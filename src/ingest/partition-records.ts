// Routes each candidate code to its partition (DESIGN section 4: the same hash for every topic) and
// packs it into that partition's pending record: codes joined by `\n`, up to RECORD_BYTES. The
// code's bytes are copied straight from the decompressed chunk; nothing is allocated per code.
import { packHi, packLo, partitionOf } from '../shared/code-packing.js'
import type { OnCode } from '../shared/code-rule.js'

/** Largest record value: far below Kafka's 1 MB default, large enough to amortise per-record cost. */
export const RECORD_BYTES = 64 * 1024
const LF = 0x0a

export interface PackedRecord {
  partition: number
  value: Buffer
  codes: number
}

export class PartitionRecords {
  readonly #partitions: number
  readonly #recordBytes: number
  readonly #buffers: Buffer[]
  readonly #fill: Int32Array
  readonly #pendingCodes: Int32Array
  /** full records not yet taken, and their total bytes */
  #full: PackedRecord[] = []
  #fullBytes = 0

  constructor (partitions: number, recordBytes = RECORD_BYTES) {
    this.#partitions = partitions
    this.#recordBytes = recordBytes
    this.#buffers = Array.from({ length: partitions }, () => Buffer.allocUnsafe(recordBytes))
    this.#fill = new Int32Array(partitions)
    this.#pendingCodes = new Int32Array(partitions)
  }

  readonly onCode: OnCode = (bytes, start, end) => {
    const partition = partitionOf(packHi(bytes, start, end), packLo(bytes, start, end), this.#partitions)
    let at = this.#fill[partition]
    if (at + 1 + end - start > this.#recordBytes) {
      this.#close(partition)
      at = 0
    }
    const buffer = this.#buffers[partition]
    if (at > 0) buffer[at++] = LF
    for (let i = start; i < end; i++) buffer[at++] = bytes[i]
    this.#fill[partition] = at
    this.#pendingCodes[partition]++
  }

  /** Bytes of the full records not yet taken. */
  get fullBytes (): number {
    return this.#fullBytes
  }

  /** Returns the full records and forgets them. */
  takeFull (): PackedRecord[] {
    const full = this.#full
    this.#full = []
    this.#fullBytes = 0
    return full
  }

  /** Closes every non-empty pending record (at the end of the file) and returns all full ones. */
  takeAll (): PackedRecord[] {
    for (let p = 0; p < this.#partitions; p++) if (this.#fill[p] > 0) this.#close(p)
    return this.takeFull()
  }

  #close (partition: number): void {
    const length = this.#fill[partition]
    this.#full.push({ partition, value: this.#buffers[partition].subarray(0, length), codes: this.#pendingCodes[partition] })
    this.#fullBytes += length
    this.#buffers[partition] = Buffer.allocUnsafe(this.#recordBytes)
    this.#fill[partition] = 0
    this.#pendingCodes[partition] = 0
  }
}
