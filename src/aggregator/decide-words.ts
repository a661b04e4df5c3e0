// Deciding one partition state (DESIGN section 5): the codes among its sort words seen in at least
// `minFiles` distinct files. The plain way, V8's native sort of all the 64-bit words and one pass
// over equal neighbours, costs about 120 ns a word at full size (37 M words a partition): the
// sort's passes over 300 MB miss the cache. But nearly every code is in one file only, so this
// rules those out first, a bucket at a time, and sorts only what is left (issue 15):
// 1. the state already holds its words in buckets by a hash of the code, every entry of a code in
//    one bucket, each a few thousand words (partition-state.ts puts each word in its bucket as it
//    is read);
// 2. per bucket, OR each entry's file bit into a small table at a second hash of the code: a code
//    in `minFiles` files leaves that many bits in its slot, so an entry whose slot has fewer is
//    not wanted. Another code sharing the slot only lets an entry through, never drops one;
// 3. sort the entries let through (a few percent of the words) natively, and count each code's
//    distinct files exactly among them: every entry of a wanted code is there.
// The state is left as it is. The entries let through are copied: when they would pass a quarter
// of the state (most codes wanted, or MIN_FILES=1), the whole state is sorted in place instead, and
// left as one bucket of sorted words.
import { WORD_FILE_BITS, hiOfWord, loOfWord, LITTLE_ENDIAN } from '../shared/code-packing.js'

/** Codes as (hi, lo) pairs: pairs[2i] = hi, pairs[2i+1] = lo. */
export interface PackedCodes {
  pairs: Uint32Array
  count: number
}

export interface Decision extends PackedCodes {
  /** words that reached the sort: the ones the filter let through, or all of them */
  sorted: number
}

/**
 * A partition state's words as PartitionState holds them, and hands them to a decide thread (every
 * array is transferred, none copied). Bucket b is the chunks first[b], next[first[b]], … until -1;
 * all of them are full but the last, which ends before the word end[b].
 */
export interface StateWords {
  /** the 64-bit sort words, read and written as uint32 halves */
  buffer: ArrayBuffer
  /** words held */
  length: number
  /** the file indexes that occur, one bit each */
  files: number
  /** a chunk holds 2^chunkBits words; chunk c is the words from c × 2^chunkBits */
  chunkBits: number
  /** chunks in use: 0 to chunks - 1, all of them linked to some bucket */
  chunks: number
  /** per bucket, its first chunk, or -1 */
  first: Int32Array
  /** per chunk, the next chunk of its bucket, or -1 */
  next: Int32Array
  /** per bucket, the index of the word after its last one */
  end: Uint32Array
}

const FILE_MASK = (1 << WORD_FILE_BITS) - 1
// Which Uint32 of each 64-bit word holds its low half depends on the platform's byte order.
const LOW = LITTLE_ENDIAN ? 0 : 1
const HIGH = LITTLE_ENDIAN ? 1 : 0

const SLOTS_PER_WORD = 16
/** a byte table of 256 KB, in a core's L2 */
const MAX_TABLE_SLOTS = 1 << 18
/** Above this share of the state, the entries let through are not worth copying. */
const MAX_LET_THROUGH = 1 / 4
/** What the holes of a state's chunks hold while it is sorted whole: the largest word, so they sort last. */
const HOLE = 0xffffffff

/** Filter slot of a word: a hash independent of the bucket's (partition-state.ts), so a bucket's codes spread over it. */
function slotHash (high: number, low: number): number {
  return Math.imul(Math.imul(high, 0xcc9e2d51) ^ (low >>> WORD_FILE_BITS), 0x1b873593)
}

function bitCount (mask: number): number {
  let count = 0
  for (let m = mask; m !== 0; m &= m - 1) count++
  return count
}

/**
 * The codes among the state's words seen in at least `minFiles` distinct files, in code order.
 * PartitionState.decide, and a Decider's worker thread.
 */
export function decideWords (words: StateWords, minFiles: number): Decision {
  if (minFiles > 1) {
    const letThrough = letThroughFilter(words, minFiles)
    if (letThrough !== null) return { ...mergeSorted(letThrough.halves, letThrough.count, letThrough.count, minFiles), sorted: letThrough.count }
  }
  return { ...sortWhole(words, minFiles), sorted: words.length }
}

/** Filters the state a bucket at a time and returns the words let through (copied); null when they would pass MAX_LET_THROUGH of it. */
function letThroughFilter (words: StateWords, minFiles: number): LetThrough | null {
  const filter = new SlotFilter(words.files, minFiles, Math.floor(words.length * MAX_LET_THROUGH))
  const halves = new Uint32Array(words.buffer)
  for (let bucket = 0; bucket < words.first.length; bucket++) {
    if (words.first[bucket] !== -1 && !filter.pass(halves, words, bucket)) return null
  }
  return filter.letThrough
}

/**
 * Sorts the state's words in place (its chunks' holes sort last) and keeps the codes whose equal
 * words span `minFiles` files; the state is left as one bucket: its words, sorted, in chunk order.
 */
function sortWhole (words: StateWords, minFiles: number): PackedCodes {
  const { first, next, end, chunkBits } = words
  const halves = new Uint32Array(words.buffer, 0, 2 * words.chunks * 2 ** chunkBits)
  for (let bucket = 0; bucket < first.length; bucket++) {
    // Only a bucket's last chunk has a hole: from end[bucket] to that chunk's end.
    if (first[bucket] !== -1) halves.fill(HOLE, 2 * end[bucket], 2 * (Math.ceil(end[bucket] / 2 ** chunkBits) * 2 ** chunkBits))
  }
  const decided = mergeSorted(halves, words.chunks * 2 ** chunkBits, words.length, minFiles)
  first.fill(-1)
  end.fill(0)
  words.chunks = Math.ceil(words.length / 2 ** chunkBits)
  for (let chunk = 0; chunk < words.chunks; chunk++) next[chunk] = chunk + 1 < words.chunks ? chunk + 1 : -1
  if (words.chunks > 0) {
    first[0] = 0
    end[0] = words.length
  }
  return decided
}

interface LetThrough {
  halves: Uint32Array
  count: number
}

/** The filter of one bucket at a time, and the words it let through so far. */
class SlotFilter {
  readonly #table: Uint8Array | Uint16Array
  /** file mask -> 1 when it has at least minFiles bits */
  readonly #enough: Uint8Array
  readonly #limit: number
  #out = new Uint32Array(2 * 1024)
  #count = 0

  constructor (files: number, minFiles: number, limit: number) {
    // One bit a file index: eight files fit a byte, which keeps the table small in the usual case.
    const wide = files >= 1 << 8
    this.#table = wide ? new Uint16Array(MAX_TABLE_SLOTS) : new Uint8Array(MAX_TABLE_SLOTS)
    this.#enough = new Uint8Array(wide ? 1 << 16 : 1 << 8)
    for (let mask = 0; mask < this.#enough.length; mask++) this.#enough[mask] = bitCount(mask) >= minFiles ? 1 : 0
    this.#limit = limit
  }

  get letThrough (): LetThrough {
    return { halves: this.#out, count: this.#count }
  }

  /** Filters one bucket of the state; false when more than the limit would be let through. */
  pass (halves: Uint32Array, words: StateWords, bucket: number): boolean {
    const { first, next, end } = words
    const chunkWords = 2 ** words.chunkBits
    const table = this.#table
    const enough = this.#enough
    let count = 0
    for (let chunk = first[bucket]; chunk !== -1; chunk = next[chunk]) count += next[chunk] === -1 ? end[bucket] - chunk * chunkWords : chunkWords
    const slots = tableSlots(count)
    const slotShift = 32 - Math.log2(slots)
    table.fill(0, 0, slots)
    for (let chunk = first[bucket]; chunk !== -1; chunk = next[chunk]) {
      const to = next[chunk] === -1 ? end[bucket] : (chunk + 1) * chunkWords
      for (let i = chunk * chunkWords; i < to; i++) {
        const low = halves[2 * i + LOW]
        table[slotHash(halves[2 * i + HIGH], low) >>> slotShift] |= 1 << (low & FILE_MASK)
      }
    }
    for (let chunk = first[bucket]; chunk !== -1; chunk = next[chunk]) {
      const to = next[chunk] === -1 ? end[bucket] : (chunk + 1) * chunkWords
      for (let i = chunk * chunkWords; i < to; i++) {
        const low = halves[2 * i + LOW]
        const high = halves[2 * i + HIGH]
        if (enough[table[slotHash(high, low) >>> slotShift]] === 0) continue
        if (this.#count === this.#limit) return false
        if (2 * this.#count + 2 > this.#out.length) this.#out = grown(this.#out)
        this.#out[2 * this.#count + LOW] = low
        this.#out[2 * this.#count + HIGH] = high
        this.#count++
      }
    }
    return true
  }
}

/** A power of two, 16 slots a word, from 2 (so slotShift stays below 32) to MAX_TABLE_SLOTS. */
function tableSlots (words: number): number {
  let slots = 2
  while (slots < SLOTS_PER_WORD * words && slots < MAX_TABLE_SLOTS) slots *= 2
  return slots
}

function grown (array: Uint32Array): Uint32Array<ArrayBuffer> {
  const bigger = new Uint32Array(array.length * 2)
  bigger.set(array)
  return bigger
}

/**
 * Sorts the first `sorted` words natively, then keeps the codes among the first `n` of them whose
 * equal words span `minFiles` files.
 */
function mergeSorted (halves: Uint32Array, sorted: number, n: number, minFiles: number): PackedCodes {
  new BigUint64Array(halves.buffer, 0, sorted).sort()
  let out = new Uint32Array(256)
  let count = 0
  let i = 0
  while (i < n) {
    const high = halves[2 * i + HIGH]
    const codeLow = halves[2 * i + LOW] >>> WORD_FILE_BITS
    let mask = 0
    let j = i
    while (j < n && halves[2 * j + HIGH] === high && halves[2 * j + LOW] >>> WORD_FILE_BITS === codeLow) {
      mask |= 1 << (halves[2 * j + LOW] & FILE_MASK)
      j++
    }
    if (bitCount(mask) >= minFiles) {
      if (2 * count + 2 > out.length) out = grown(out)
      out[2 * count] = hiOfWord(high)
      out[2 * count + 1] = loOfWord(high, halves[2 * i + LOW])
      count++
    }
    i = j
  }
  return { pairs: out, count }
}
