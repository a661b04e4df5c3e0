// Deciding one partition state (DESIGN section 5): the codes among its sort words seen in at least
// `minFiles` distinct files. The plain way, V8's native sort of all the 64-bit words and one pass
// over equal neighbours, costs about 120 ns a word at full size (37 M words a partition): the
// sort's passes over 300 MB miss the cache. But nearly every code is in one file only, so this
// rules those out first, in cache-sized pieces, and sorts only what is left (issue 15):
// 1. split the words, in place, into buckets by a hash of the code (an American flag sort: one
//    pass counts, one pass swaps each word into its bucket), so every entry of a code shares a
//    bucket; then each bucket, in the shared L3 cache, into pieces whose filter fits a core's L2;
// 2. per piece, OR each entry's file bit into a small table at a second hash of the code: a code
//    in `minFiles` files leaves that many bits in its slot, so an entry whose slot has fewer is
//    not wanted. Another code sharing the slot only lets an entry through, never drops one;
// 3. sort the entries let through (a few percent of the words) natively, and count each code's
//    distinct files exactly among them: every entry of a wanted code is there.
// The state is only permuted, so it can be decided again. The entries let through are copied: when
// they would pass a quarter of the state (most codes wanted, or MIN_FILES=1), the whole state is
// sorted in place instead, as before.
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

const FILE_MASK = (1 << WORD_FILE_BITS) - 1
// Which Uint32 of each 64-bit word holds its low half depends on the platform's byte order.
const LOW = LITTLE_ENDIAN ? 0 : 1
const HIGH = LITTLE_ENDIAN ? 1 : 0

/** Words a bucket holds on average at most: it is split again within the shared L3 cache. */
const BUCKET_WORDS = 1 << 17
/** Words a filter table serves on average at most: its byte table (256 KB) stays in a core's L2. */
const FILTER_WORDS = 1 << 14
const SLOTS_PER_WORD = 16
const MAX_TABLE_SLOTS = 1 << 18
/** Above this share of the state, the entries let through are not worth copying. */
const MAX_LET_THROUGH = 1 / 4

/** Bucket of a word: the top bits of a hash of its code (file bits left out). */
function bucketHash (high: number, low: number): number {
  return Math.imul(high ^ Math.imul(low >>> WORD_FILE_BITS, 0x85ebca6b), 0x9e3779b1)
}

/** Filter slot of a word: a hash independent of bucketHash, so a bucket's codes spread over it. */
function slotHash (high: number, low: number): number {
  return Math.imul(Math.imul(high, 0xcc9e2d51) ^ (low >>> WORD_FILE_BITS), 0x1b873593)
}

function bitCount (mask: number): number {
  let count = 0
  for (let m = mask; m !== 0; m &= m - 1) count++
  return count
}

/** How finely decideWords splits (tests make the pieces small, to have many at a few words). */
export interface DecideSizes {
  /** words a first-level bucket holds on average at most */
  bucketWords: number
  /** words a filter table serves on average at most */
  filterWords: number
}

/**
 * The codes among the first `n` words of `buffer` seen in at least `minFiles` distinct files, in
 * code order. Permutes the words in place. PartitionState.decide, and a Decider's worker thread.
 */
export function decideWords (buffer: ArrayBufferLike, n: number, minFiles: number, sizes: DecideSizes = { bucketWords: BUCKET_WORDS, filterWords: FILTER_WORDS }): Decision {
  const halves = new Uint32Array(buffer, 0, 2 * n)
  if (minFiles > 1) {
    const letThrough = letThroughFilter(halves, n, minFiles, sizes)
    if (letThrough !== null) return { ...mergeSorted(letThrough.halves, letThrough.count, minFiles), sorted: letThrough.count }
  }
  return { ...mergeSorted(halves, n, minFiles), sorted: n }
}

/**
 * Splits the words into buckets, and each bucket again into pieces a filter table serves, then
 * returns the words let through (copied); null when they would pass MAX_LET_THROUGH of the state.
 */
function letThroughFilter (halves: Uint32Array, n: number, minFiles: number, sizes: DecideSizes): LetThrough | null {
  const bits = splitBits(n, sizes.bucketWords)
  const { ends, files } = splitRange(halves, 0, n, bits, 0)
  const filter = new SlotFilter(files, minFiles, Math.floor(n * MAX_LET_THROUGH))
  let start = 0
  for (const end of ends) {
    let pieceStart = start
    for (const pieceEnd of splitRange(halves, start, end, splitBits(end - start, sizes.filterWords), bits).ends) {
      if (!filter.pass(halves, pieceStart, pieceEnd)) return null
      pieceStart = pieceEnd
    }
    start = end
  }
  return filter.letThrough
}

function splitBits (words: number, target: number): number {
  return Math.max(0, Math.ceil(Math.log2(words / target)))
}

interface Split {
  /** piece k is the words [ends[k - 1], ends[k]) (from the range's start for k = 0) */
  ends: Uint32Array
  /** the file bits that occur, one bit a file index */
  files: number
}

/**
 * Permutes the words [from, to) into 2^bits pieces by the `bits` bits of bucketHash that follow
 * its first `skip` bits (the ones an earlier split used): every entry of a code lands in one piece.
 */
function splitRange (halves: Uint32Array, from: number, to: number, bits: number, skip: number): Split {
  const pieces = 1 << bits
  // The bits in two shifts, since `>>> 32` shifts by nothing: 0 bits give piece 0.
  const shift = 31 - bits
  const pieceOf = (high: number, low: number): number => ((bucketHash(high, low) << skip) >>> 1) >>> shift
  const next = new Uint32Array(pieces)
  let files = 0
  for (let i = from; i < to; i++) {
    const low = halves[2 * i + LOW]
    files |= 1 << (low & FILE_MASK)
    next[pieceOf(halves[2 * i + HIGH], low)]++
  }
  const ends = new Uint32Array(pieces)
  let sum = from
  for (let k = 0; k < pieces; k++) {
    const size = next[k]
    next[k] = sum
    sum += size
    ends[k] = sum
  }
  // An American flag sort: each word not yet in place is carried along a cycle of swaps until one
  // belongs where the cycle started.
  for (let k = 0; k < pieces; k++) {
    while (next[k] < ends[k]) {
      const start = next[k]
      let low = halves[2 * start + LOW]
      let high = halves[2 * start + HIGH]
      let to = pieceOf(high, low)
      while (to !== k) {
        const at = next[to]++
        const lowThere = halves[2 * at + LOW]
        const highThere = halves[2 * at + HIGH]
        halves[2 * at + LOW] = low
        halves[2 * at + HIGH] = high
        low = lowThere
        high = highThere
        to = pieceOf(high, low)
      }
      halves[2 * start + LOW] = low
      halves[2 * start + HIGH] = high
      next[k]++
    }
  }
  return { ends, files }
}

interface LetThrough {
  halves: Uint32Array
  count: number
}

/** The filter of one piece at a time, and the words it let through so far. */
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

  /** Filters the words [from, to); false when more than the limit would be let through. */
  pass (halves: Uint32Array, from: number, to: number): boolean {
    const table = this.#table
    const enough = this.#enough
    const slots = tableSlots(to - from)
    const slotShift = 32 - Math.log2(slots)
    table.fill(0, 0, slots)
    for (let i = from; i < to; i++) {
      const low = halves[2 * i + LOW]
      table[slotHash(halves[2 * i + HIGH], low) >>> slotShift] |= 1 << (low & FILE_MASK)
    }
    for (let i = from; i < to; i++) {
      const low = halves[2 * i + LOW]
      const high = halves[2 * i + HIGH]
      if (enough[table[slotHash(high, low) >>> slotShift]] === 0) continue
      if (this.#count === this.#limit) return false
      if (2 * this.#count + 2 > this.#out.length) this.#out = grown(this.#out)
      this.#out[2 * this.#count + LOW] = low
      this.#out[2 * this.#count + HIGH] = high
      this.#count++
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

/** Sorts the first `n` words natively, then keeps the codes whose equal words span `minFiles` files. */
function mergeSorted (halves: Uint32Array, n: number, minFiles: number): PackedCodes {
  new BigUint64Array(halves.buffer, 0, n).sort()
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
