// Routes each candidate code to its partition (DESIGN section 4: the same hash for every topic) and
// adds it to that partition's pending record, up to RECORD_BYTES, in the segment's record format
// (src/shared/segments.ts): by default `packed`, the two halves the partition hash needs anyway,
// 8 bytes a code; or `lines`, the code's bytes copied from the decompressed chunk and joined by LF.
// Nothing is allocated per code.
import { packHi, packLo, partitionOf } from '../shared/code-packing.js'
import type { OnCode } from '../shared/code-rule.js'
import { PACKED_CODE_BYTES, type RecordFormat } from '../shared/segments.js'

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
  readonly format: RecordFormat
  readonly #buffers: Buffer[]
  readonly #fill: Int32Array
  readonly #pendingCodes: Int32Array
  /** full records not yet taken, and their total bytes */
  #full: PackedRecord[] = []
  #fullBytes = 0
  /** full bytes not yet taken of the partition with the most */
  #fullBytesMax = 0
  readonly #fullBytesOf: Float64Array

  constructor (partitions: number, recordBytes = RECORD_BYTES, format: RecordFormat = 'packed') {
    this.#partitions = partitions
    this.#recordBytes = recordBytes
    this.format = format
    this.#fullBytesOf = new Float64Array(partitions)
    this.onCode = format === 'packed' ? this.#onPackedCode : this.#onLineCode
    this.#buffers = Array.from({ length: partitions }, () => Buffer.allocUnsafe(recordBytes))
    this.#fill = new Int32Array(partitions)
    this.#pendingCodes = new Int32Array(partitions)
  }

  readonly onCode: OnCode

  readonly #onPackedCode: OnCode = (bytes, start, end) => {
    const hi = packHi(bytes, start, end)
    const lo = packLo(bytes, start, end)
    const partition = partitionOf(hi, lo, this.#partitions)
    let at = this.#fill[partition]
    if (at + PACKED_CODE_BYTES > this.#recordBytes) {
      this.#close(partition)
      at = 0
    }
    const buffer = this.#buffers[partition]
    buffer[at] = hi >>> 24
    buffer[at + 1] = hi >>> 16
    buffer[at + 2] = hi >>> 8
    buffer[at + 3] = hi
    buffer[at + 4] = lo >>> 24
    buffer[at + 5] = lo >>> 16
    buffer[at + 6] = lo >>> 8
    buffer[at + 7] = lo
    this.#fill[partition] = at + PACKED_CODE_BYTES
    this.#pendingCodes[partition]++
  }

  readonly #onLineCode: OnCode = (bytes, start, end) => {
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

  /** Bytes of the full records not yet taken in the partition that has the most. */
  get fullBytesMax (): number {
    return this.#fullBytesMax
  }

  /** Returns the full records and forgets them. */
  takeFull (): PackedRecord[] {
    const full = this.#full
    this.#full = []
    this.#fullBytes = 0
    this.#fullBytesMax = 0
    this.#fullBytesOf.fill(0)
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
    this.#fullBytesOf[partition] += length
    this.#fullBytesMax = Math.max(this.#fullBytesMax, this.#fullBytesOf[partition])
    this.#buffers[partition] = Buffer.allocUnsafe(this.#recordBytes)
    this.#fill[partition] = 0
    this.#pendingCodes[partition] = 0
  }
}
