// Routes each candidate code to its partition (DESIGN section 4: the same hash for every topic) and
// adds it to that partition's pending record, up to RECORD_BYTES, in the segment's record format
// (src/shared/segments.ts): by default `words`, the code's sort word, 8 bytes that the aggregator
// copies as they are; `packed`, the two halves the partition hash needs anyway, 8 bytes a code; or
// `lines`, the code's bytes copied from the decompressed chunk and joined by LF. Nothing is
// allocated per code.
import { LITTLE_ENDIAN, packHi, packLo, packing, partitionHash, wordHigh, wordLow, type OnPackedCode } from '../shared/code-packing.js'
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
  /** partitions - 1 when they are a power of two (a mask routes a code), else -1 (a division) */
  readonly #partitionMask: number
  readonly #recordBytes: number
  readonly format: RecordFormat
  readonly #buffers: Buffer[]
  /** the same memory as #buffers, as uint32s (a record buffer is its own 8-aligned allocation) */
  readonly #uint32s: Uint32Array[]
  readonly #fill: Int32Array
  /** codes in each pending `lines` record (a record of 8-byte codes holds fill / 8) */
  readonly #pendingCodes: Int32Array
  /** full records not yet taken, and their total bytes */
  #full: PackedRecord[] = []
  #fullBytes = 0
  /** full bytes not yet taken of the partition with the most */
  #fullBytesMax = 0
  readonly #fullBytesOf: Float64Array

  constructor (partitions: number, recordBytes = RECORD_BYTES, format: RecordFormat = 'words') {
    this.#partitions = partitions
    this.#partitionMask = (partitions & (partitions - 1)) === 0 ? partitions - 1 : -1
    this.#recordBytes = recordBytes
    this.format = format
    this.#fullBytesOf = new Float64Array(partitions)
    this.onPacked = { words: this.#onWord, packed: this.#onPacked, lines: null }[format]
    this.onCode = this.onPacked === null ? this.#onLineCode : packing(this.onPacked)
    this.#buffers = Array.from({ length: partitions }, () => Buffer.alloc(0))
    this.#uint32s = Array.from({ length: partitions }, () => new Uint32Array(0))
    for (let p = 0; p < partitions; p++) this.#newRecord(p)
    this.#fill = new Int32Array(partitions)
    this.#pendingCodes = new Int32Array(partitions)
  }

  /** Adds a code from the bytes [start, end) of a chunk (CodeScanner's callback). */
  readonly onCode: OnCode
  /**
   * Adds a code already packed (PackingScanner's callback); null for the `lines` format, which
   * needs the code's bytes.
   */
  readonly onPacked: OnPackedCode | null

  /**
   * The word as two native uint32 stores, low half first: a little-endian uint64 (on a big-endian
   * platform, once #close has swapped each uint32's bytes).
   */
  readonly #onWord: OnPackedCode = (hi, lo) => {
    const partition = this.#partitionOf(hi, lo)
    const at = this.#reserve(partition, PACKED_CODE_BYTES)
    const uint32s = this.#uint32s[partition]
    uint32s[at >>> 2] = wordLow(lo)
    uint32s[(at >>> 2) + 1] = wordHigh(hi, lo)
    this.#fill[partition] = at + PACKED_CODE_BYTES
  }

  /** `hi` then `lo` as big-endian uint32s. */
  readonly #onPacked: OnPackedCode = (hi, lo) => {
    const partition = this.#partitionOf(hi, lo)
    const at = this.#reserve(partition, PACKED_CODE_BYTES)
    this.#buffers[partition].writeUInt32BE(hi, at)
    this.#buffers[partition].writeUInt32BE(lo, at + 4)
    this.#fill[partition] = at + PACKED_CODE_BYTES
  }

  readonly #onLineCode: OnCode = (bytes, start, end) => {
    const partition = this.#partitionOf(packHi(bytes, start, end), packLo(bytes, start, end))
    let at = this.#reserve(partition, 1 + end - start)
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

  /** partitionOf(hi, lo, partitions), by a mask when it can. */
  #partitionOf (hi: number, lo: number): number {
    const hash = partitionHash(hi, lo)
    return this.#partitionMask >= 0 ? hash & this.#partitionMask : (hash >>> 0) % this.#partitions
  }

  /** Where the next `bytes` of the partition's record go; a record they would overflow is closed first. */
  #reserve (partition: number, bytes: number): number {
    const at = this.#fill[partition]
    if (at + bytes <= this.#recordBytes) return at
    this.#close(partition)
    return 0
  }

  #newRecord (partition: number): void {
    // Rounded up to whole uint32s for the view; a record never uses more than recordBytes.
    const buffer = Buffer.allocUnsafeSlow(Math.ceil(this.#recordBytes / 4) * 4)
    this.#buffers[partition] = buffer
    this.#uint32s[partition] = new Uint32Array(buffer.buffer, buffer.byteOffset, buffer.length / 4)
  }

  #close (partition: number): void {
    const length = this.#fill[partition]
    const codes = this.format === 'lines' ? this.#pendingCodes[partition] : length / PACKED_CODE_BYTES
    const value = this.#buffers[partition].subarray(0, length)
    if (this.format === 'words' && !LITTLE_ENDIAN) value.swap32()
    this.#full.push({ partition, value, codes })
    this.#fullBytes += length
    this.#fullBytesOf[partition] += length
    this.#fullBytesMax = Math.max(this.#fullBytesMax, this.#fullBytesOf[partition])
    this.#newRecord(partition)
    this.#fill[partition] = 0
    this.#pendingCodes[partition] = 0
  }
}
