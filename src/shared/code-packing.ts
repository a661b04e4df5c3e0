// Reversible packing of a code into two small integers, so that per-code state can live in typed
// arrays (DESIGN section 1: no string, object or Map entry per code at 313 million codes).
//
// Each of the 10 character slots takes 6 bits: 0 means "no character", 1..62 are '0'-'9',
// 'A'-'Z', 'a'-'z' in ASCII order. `hi` holds slots 0-4 and `lo` slots 5-9, 30 bits each, so:
// - the length is kept (OVER9000 has two empty slots, OVER900000 has '0' in them: no collision);
// - comparing (hi, lo) numerically orders codes exactly like comparing the strings;
// - both halves are below 2^30, so each fits a Uint32Array slot (together 60 bits: too many for
//   one exact double, so the pair is the key).
import { CODE_ALPHABET, CodeScanner, isCodeShape, MAX_CODE_LENGTH, MIN_CODE_LENGTH, type OnCode } from './code-rule.js'

const SLOT_RANGE = 64 // 6 bits a slot
const SLOTS_PER_HALF = 5

/** byte -> slot value (1..62, in the alphabet's ASCII order), 0 for a byte that is not in a code */
const SLOT = new Uint8Array(256)
/** slot value -> byte */
const BYTE = new Uint8Array(SLOT_RANGE)
for (let i = 0; i < CODE_ALPHABET.length; i++) {
  SLOT[CODE_ALPHABET.charCodeAt(i)] = i + 1
  BYTE[i + 1] = CODE_ALPHABET.charCodeAt(i)
}

/** bits of one slot: values stay below 2^30, so the int32 shifts below never overflow */
const SLOT_BITS = 6
const LF = 0x0a

/** High half of the code in bytes [start, end); the bytes must be a valid code (8-10 alnum). */
export function packHi (bytes: Uint8Array, start: number, end: number): number {
  // Every code has at least five characters, so all five slots of hi hold one (unrolled: the
  // ingest packs every code of the files, 313 million).
  if (end - start < SLOTS_PER_HALF) return packSlots(bytes, start, end)
  let value = SLOT[bytes[start]]
  value = (value << SLOT_BITS) | SLOT[bytes[start + 1]]
  value = (value << SLOT_BITS) | SLOT[bytes[start + 2]]
  value = (value << SLOT_BITS) | SLOT[bytes[start + 3]]
  return (value << SLOT_BITS) | SLOT[bytes[start + 4]]
}

/** Low half of the code in bytes [start, end). */
export function packLo (bytes: Uint8Array, start: number, end: number): number {
  // Unrolled for the lengths a code has (8 to 10): at least three slots of lo hold a character.
  const length = end - start
  if (length < 8 || length > 10) return packSlots(bytes, start + SLOTS_PER_HALF, end)
  let value = SLOT[bytes[start + 5]]
  value = (value << SLOT_BITS) | SLOT[bytes[start + 6]]
  value = (value << SLOT_BITS) | SLOT[bytes[start + 7]]
  value = (value << SLOT_BITS) | (length > 8 ? SLOT[bytes[start + 8]] : 0)
  return (value << SLOT_BITS) | (length > 9 ? SLOT[bytes[start + 9]] : 0)
}

function packSlots (bytes: Uint8Array, from: number, to: number): number {
  let value = 0
  for (let i = from; i < from + SLOTS_PER_HALF; i++) value = (value << SLOT_BITS) | (i < to ? SLOT[bytes[i]] : 0)
  return value
}

/**
 * How PackedCodes stores a code's two uint32s: `words`, the sort word low half first (wordLow,
 * wordHigh); `halves`, hi then lo.
 */
export type PackedLayout = 'words' | 'halves'

/**
 * Codes packed as two uint32s each, in one pending record per partition (routed by partitionHash):
 * what PackingScanner fills. Its owner (the ingest's PartitionRecords) takes a full record away
 * and puts an empty one in its place (`records[p]`, `fill[p] = 0`) when told to make room.
 */
export class PackedCodes {
  /** per partition, its pending record */
  readonly records: Uint32Array[]
  /** per partition, the uint32s used in its record */
  readonly fill: Int32Array
  /** uint32s a record holds: an even number */
  readonly capacity: number
  readonly partitions: number
  /** partitions - 1 when they are a power of two (a mask routes a code), else -1 (a division) */
  readonly mask: number
  /** the `words` layout (else `halves`) */
  readonly words: boolean
  /** the partition whose record had no room for the last code, or -1 */
  full = -1

  /** `records`: one empty record per partition, each of `capacity` uint32s */
  constructor (records: Uint32Array[], capacity: number, layout: PackedLayout) {
    if (capacity < 2 || capacity % 2 !== 0) throw new RangeError(`a record holds an even number of uint32s, at least 2: ${capacity}`)
    const partitions = records.length
    this.partitions = partitions
    this.mask = (partitions & (partitions - 1)) === 0 ? partitions - 1 : -1
    this.capacity = capacity
    this.words = layout === 'words'
    this.records = records
    this.fill = new Int32Array(partitions)
  }
}

/**
 * Appends one code to its partition's record; false, with `codes.full` set, when that record has
 * no room (nothing is written then).
 */
function appendPacked (codes: PackedCodes, hi: number, lo: number): boolean {
  const partition = routeCode(hi, lo, codes.mask, codes.partitions)
  const at = codes.fill[partition]
  if (at + 2 > codes.capacity) {
    codes.full = partition
    return false
  }
  putCode(codes.records[partition], at, hi, lo, codes.words)
  codes.fill[partition] = at + 2
  return true
}

/** Writes a code's two uint32s at record[at] in the layout (`words` or else `halves`). */
function putCode (record: Uint32Array, at: number, hi: number, lo: number, words: boolean): void {
  if (words) {
    record[at] = wordLow(lo)
    record[at + 1] = wordHigh(hi, lo)
  } else {
    record[at] = hi
    record[at + 1] = lo
  }
}

/** partitionOf(hi, lo, partitions), by a mask when there is one (>= 0). */
function routeCode (hi: number, lo: number, mask: number, partitions: number): number {
  const hash = partitionHash(hi, lo)
  return mask >= 0 ? hash & mask : (hash >>> 0) % partitions
}

/** The scanner's counts that packLines adds to. */
interface LineCounts { lines: number, codes: number }

/**
 * The ingest's hot loop, over the whole lines [from, to) of a chunk (to - 1 is a LF, so no run
 * reaches past it): finds each code, packs it and appends it to its partition's record, with no
 * call per code (313 million of them). Returns `to`, or where the code whose record is full
 * starts (`codes.full` says which partition; make room and call again from there).
 */
function packLines (chunk: Uint8Array, from: number, to: number, codes: PackedCodes, counts: LineCounts): number {
  const { records, fill, capacity, mask, partitions, words } = codes
  let lines = 0
  let found = 0
  let i = from
  codes.full = -1
  while (i < to) {
    let slot = SLOT[chunk[i]]
    if (slot === 0) {
      if (chunk[i] === LF) lines++
      i++
      continue
    }
    // The first five characters go to hi, the rest to lo (a run of more than ten is no code,
    // whatever lo became).
    const start = i
    let hi = 0
    let lo = 0
    do {
      if (i - start < SLOTS_PER_HALF) hi = (hi << SLOT_BITS) | slot
      else lo = (lo << SLOT_BITS) | slot
      slot = SLOT[chunk[++i]]
    } while (slot !== 0)
    const length = i - start
    if (length < MIN_CODE_LENGTH || length > MAX_CODE_LENGTH) continue
    // lo's empty slots are its lowest ones, as packLo leaves them.
    lo <<= SLOT_BITS * (2 * SLOTS_PER_HALF - length)
    const partition = routeCode(hi, lo, mask, partitions)
    const at = fill[partition]
    if (at + 2 > capacity) {
      codes.full = partition
      i = start
      break
    }
    putCode(records[partition], at, hi, lo, words)
    fill[partition] = at + 2
    found++
  }
  counts.lines += lines
  counts.codes += found
  return i
}

/**
 * A CodeScanner that packs every code into PackedCodes, for the ingest, which packs all 313
 * million: the lines wholly inside a chunk are scanned, packed and routed in one pass over their
 * bytes (packLines). A chunk's first and last partial lines, where a code may span two chunks, go
 * through CodeScanner's own push, which holds the carry. Same codes in the same order, and the
 * same counts, as `push` followed by packHi/packLo and appendPacked.
 */
export class PackingScanner extends CodeScanner {
  /** `makeRoom(partition)` must empty that partition's record (take it away, put a fresh one). */
  pushPacked (chunk: Uint8Array, codes: PackedCodes, makeRoom: (partition: number) => void): void {
    const first = chunk.indexOf(LF)
    const last = chunk.lastIndexOf(LF)
    const onCode = packing(codes, makeRoom)
    if (first === last) {
      this.push(chunk, onCode)
      return
    }
    // [0, first] ends the line the previous chunk left open; (last, end) opens the next one.
    this.push(chunk.subarray(0, first + 1), onCode)
    let at = first + 1
    while ((at = packLines(chunk, at, last + 1, codes, this)) <= last) makeRoom(codes.full)
    this.bytes += last - first
    this.push(chunk.subarray(last + 1), onCode)
  }

  endPacked (codes: PackedCodes, makeRoom: (partition: number) => void): void {
    this.end(packing(codes, makeRoom))
  }
}

/** A CodeScanner callback that packs each code and appends it to `codes`, making room when needed. */
export function packing (codes: PackedCodes, makeRoom: (partition: number) => void): OnCode {
  return (bytes, start, end) => {
    const hi = packHi(bytes, start, end)
    const lo = packLo(bytes, start, end)
    if (appendPacked(codes, hi, lo)) return
    makeRoom(codes.full)
    appendPacked(codes, hi, lo)
  }
}

/**
 * Packs a code string. It allocates, so the pipeline packs bytes with packHi/packLo instead; the
 * tests use this one to state their cases as strings.
 */
export function packCode (code: string): { hi: number, lo: number } {
  if (!isCodeShape(code)) throw new RangeError(`not a packable code: ${JSON.stringify(code)}`)
  const bytes = Buffer.from(code, 'latin1')
  return { hi: packHi(bytes, 0, bytes.length), lo: packLo(bytes, 0, bytes.length) }
}

/** Writes the code's bytes at out[at...] and returns its length. */
export function writeCode (hi: number, lo: number, out: Uint8Array, at: number): number {
  let length = 0
  for (const half of [hi, lo]) {
    for (let slot = SLOTS_PER_HALF - 1; slot >= 0; slot--) {
      const value = Math.floor(half / SLOT_RANGE ** slot) % SLOT_RANGE
      if (value === 0) return length
      out[at + length++] = BYTE[value]
    }
  }
  return length
}

export function unpackCode (hi: number, lo: number): string {
  const out = new Uint8Array(MAX_CODE_LENGTH)
  return Buffer.from(out.buffer, 0, writeCode(hi, lo, out, 0)).toString('latin1')
}

/**
 * Partition of a code: the same for every topic, so partition p of every data topic holds the same
 * slice of the key space and the aggregator can decide partition p alone (DESIGN section 4).
 * murmur3's 32-bit finaliser over both halves: cheap, no allocation, well spread.
 */
export function partitionOf (hi: number, lo: number, partitions: number): number {
  return (partitionHash(hi, lo) >>> 0) % partitions
}

/**
 * partitionOf's hash as an int32. With a power-of-two partition count, `hash & (count - 1)` is
 * partitionOf without its division (the ingest routes all 313 million codes).
 */
export function partitionHash (hi: number, lo: number): number {
  let h = Math.imul(hi ^ (hi >>> 16), 0x85ebca6b) ^ lo
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return h ^ (h >>> 16)
}

/**
 * A code as one 64-bit sort word, most significant bit first: hi (30 bits) | lo (30 bits) | 4 bits
 * left for a file index. Sorting such words orders them by code, and the entries of one code (one
 * per file) become adjacent: the aggregator's partition state (partition-state.ts). The `words`
 * record format (segments.ts) carries exactly these words, file bits zero, so the aggregator copies
 * a record into its state as a block. Each half of the word fits a uint32, so no BigInt per code.
 */
export const WORD_FILE_BITS = 4
/** Whether this platform's uint32s are little-endian: a sort word's halves are stored as uint32s. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
/** bits of lo in the word's low uint32, above the file bits */
const LO_LOW_BITS = 32 - WORD_FILE_BITS
const LO_LOW_MASK = (1 << LO_LOW_BITS) - 1

/** The word's low uint32, file bits zero. */
export function wordLow (lo: number): number {
  return ((lo & LO_LOW_MASK) << WORD_FILE_BITS) >>> 0
}

/** The word's high uint32. */
export function wordHigh (hi: number, lo: number): number {
  return ((hi << 2) | (lo >>> LO_LOW_BITS)) >>> 0
}

/** hi of a word's halves */
export function hiOfWord (high: number): number {
  return high >>> 2
}

/** lo of a word's halves (file bits ignored) */
export function loOfWord (high: number, low: number): number {
  return (high & 3) * 2 ** LO_LOW_BITS + (low >>> WORD_FILE_BITS)
}
