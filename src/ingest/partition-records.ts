// Routes each candidate code to its partition (DESIGN section 4: the same hash for every topic) and
// adds it to that partition's pending record, up to RECORD_BYTES, in the segment's record format
// (src/shared/segments.ts): by default `words`, the code's sort word, 8 bytes that the aggregator
// copies as they are; `packed`, the two halves the partition hash needs anyway, 8 bytes a code; or
// `lines`, the code's bytes copied from the decompressed chunk and joined by LF. Nothing is
// allocated per code, and the buffers of acknowledged records are used again (`release`).
import { CodeScanner, type OnCode } from '../shared/code-rule.js'
import { LITTLE_ENDIAN, PackedCodes, PackingScanner, packHi, packLo, packing, partitionOf } from '../shared/code-packing.js'
import { PACKED_CODE_BYTES, type RecordFormat } from '../shared/segments.js'

/** Largest record value: far below Kafka's 1 MB default, large enough to amortise per-record cost. */
export const RECORD_BYTES = 64 * 1024
const LF = 0x0a
/**
 * Buffers of released records kept for new ones. About two produce requests' worth of records
 * cycle (one on the wire, the next one filling): every record a fresh 64 KiB allocation made the
 * garbage collector run a full collection every few tens of megabytes (issue 15).
 */
const FREE_BUFFERS = 256

export interface PackedRecord {
  partition: number
  value: Buffer
  codes: number
}

export class PartitionRecords {
  readonly format: RecordFormat
  /** finds the codes of the file's chunks; its counts (lines, codes, bytes) are the file's */
  readonly scanner: CodeScanner
  readonly #partitions: number
  readonly #recordBytes: number
  /** bytes of a record's buffer: recordBytes rounded up to whole 8-byte codes (a record never uses more than recordBytes) */
  readonly #bufferBytes: number
  /** the pending records of the 8-byte formats and the scanner that fills them; null for `lines` */
  readonly #packed: { codes: PackedCodes, scanner: PackingScanner } | null
  readonly #makeRoom = (partition: number): void => { this.#close(partition) }
  /** the pending records of the `lines` format, their bytes used and their codes */
  readonly #lines: Buffer[] = []
  readonly #lineFill: Int32Array
  readonly #lineCodes: Int32Array
  readonly #free: ArrayBuffer[] = []
  /** full records not yet taken, and their total bytes */
  #full: PackedRecord[] = []
  #fullBytes = 0
  /** full bytes not yet taken of the partition with the most */
  #fullBytesMax = 0
  readonly #fullBytesOf: Float64Array

  constructor (partitions: number, recordBytes = RECORD_BYTES, format: RecordFormat = 'words') {
    this.#partitions = partitions
    this.#recordBytes = recordBytes
    this.#bufferBytes = Math.ceil(recordBytes / PACKED_CODE_BYTES) * PACKED_CODE_BYTES
    this.format = format
    this.#fullBytesOf = new Float64Array(partitions)
    this.#lineFill = new Int32Array(partitions)
    this.#lineCodes = new Int32Array(partitions)
    if (format === 'lines') {
      this.#packed = null
      for (let p = 0; p < partitions; p++) this.#lines.push(Buffer.from(this.#newBuffer()))
      this.scanner = new CodeScanner()
      this.onCode = this.#onLineCode
    } else {
      const capacity = 2 * Math.floor(recordBytes / PACKED_CODE_BYTES)
      const records = Array.from({ length: partitions }, () => new Uint32Array(this.#newBuffer(), 0, capacity))
      const codes = new PackedCodes(records, capacity, format === 'words' ? 'words' : 'halves')
      const scanner = new PackingScanner()
      this.#packed = { codes, scanner }
      this.scanner = scanner
      this.onCode = packing(codes, this.#makeRoom)
    }
  }

  /** Adds a code from the bytes [start, end) of a chunk (CodeScanner's callback). */
  readonly onCode: OnCode

  /** Finds the codes of the file's next chunk and adds them. */
  push (chunk: Uint8Array): void {
    if (this.#packed === null) this.scanner.push(chunk, this.onCode)
    else this.#packed.scanner.pushPacked(chunk, this.#packed.codes, this.#makeRoom)
  }

  /** After the file's last chunk: adds a code that ends it without a newline. */
  end (): void {
    this.scanner.end(this.onCode)
  }

  readonly #onLineCode: OnCode = (bytes, start, end) => {
    const partition = partitionOf(packHi(bytes, start, end), packLo(bytes, start, end), this.#partitions)
    let at = this.#lineFill[partition]
    if (at + 1 + end - start > this.#recordBytes) {
      this.#close(partition)
      at = 0
    }
    const buffer = this.#lines[partition]
    if (at > 0) buffer[at++] = LF
    for (let i = start; i < end; i++) buffer[at++] = bytes[i]
    this.#lineFill[partition] = at
    this.#lineCodes[partition]++
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
    for (let p = 0; p < this.#partitions; p++) if (this.#pendingBytes(p) > 0) this.#close(p)
    return this.takeFull()
  }

  /**
   * Gives back the buffers of records taken earlier, for new records: only once nothing reads them
   * any more (the broker has acknowledged them, so they are written and KafkaJS holds none).
   */
  release (records: PackedRecord[]): void {
    for (const { value } of records) {
      if (this.#free.length >= FREE_BUFFERS) return
      if (value.buffer.byteLength === this.#bufferBytes) this.#free.push(value.buffer as ArrayBuffer)
    }
  }

  #pendingBytes (partition: number): number {
    return this.#packed === null ? this.#lineFill[partition] : this.#packed.codes.fill[partition] * 4
  }

  #newBuffer (): ArrayBuffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#bufferBytes).buffer as ArrayBuffer
  }

  #close (partition: number): void {
    const length = this.#pendingBytes(partition)
    const packed = this.#packed?.codes ?? null
    let value: Buffer
    let codes: number
    if (packed === null) {
      value = this.#lines[partition].subarray(0, length)
      codes = this.#lineCodes[partition]
      this.#lines[partition] = Buffer.from(this.#newBuffer())
      this.#lineFill[partition] = 0
      this.#lineCodes[partition] = 0
    } else {
      const record = packed.records[partition]
      value = Buffer.from(record.buffer, record.byteOffset, length)
      codes = length / PACKED_CODE_BYTES
      // The uint32s are native: a word is a little-endian uint64, the halves big-endian uint32s.
      if (packed.words !== LITTLE_ENDIAN) value.swap32()
      packed.records[partition] = new Uint32Array(this.#newBuffer(), 0, packed.capacity)
      packed.fill[partition] = 0
    }
    this.#full.push({ partition, value, codes })
    this.#fullBytes += length
    this.#fullBytesOf[partition] += length
    this.#fullBytesMax = Math.max(this.#fullBytesMax, this.#fullBytesOf[partition])
  }
}
