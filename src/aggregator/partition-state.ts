// The aggregator's per-partition state (DESIGN sections 1 and 5): every code read from every
// file's segment in one partition, as one packed 64-bit word each. Deciding (decide-words.ts) lets
// only the few codes seen in more than one file reach a sort; only the small valid set ever
// leaves, as pairs of integers.
//
// Word layout (code-packing's sort word), most significant bit first: hi (30 bits) | lo (30 bits) |
// file index (4 bits). Sorting the words orders them by code, then by file, so the entries of one
// code are adjacent. The words are written and read through an aliasing Uint32Array: numbers,
// never BigInts, per code.
//
// The words are kept in buckets by a hash of the code, so that every entry of a code is in one
// bucket and deciding can filter a bucket at a time in a core's cache (issue 15). Each word is put
// in its bucket as it is read, one streaming write: the in-place split this replaces cost the
// decide threads a chain of dependent swaps, four times as long. A bucket is a list of chunks (a
// few KB each) handed out in order from one buffer, so the memory is the words plus one partly
// filled chunk a bucket.
import { LITTLE_ENDIAN, WORD_FILE_BITS, wordHigh, wordLow } from '../shared/code-packing.js'
import { decideWords, type Decision, type StateWords } from './decide-words.js'

/** File indexes fit in the word's 4 file bits, and the files-seen bitmask in 16. */
export const MAX_FILES = 1 << WORD_FILE_BITS

const FILE_MASK = MAX_FILES - 1

// Which Uint32 of each 64-bit word holds its low half depends on the platform's byte order.
const LOW = LITTLE_ENDIAN ? 0 : 1
const HIGH = LITTLE_ENDIAN ? 1 : 0

/** How a state divides its words (tests ask for small buckets and chunks, to have many). */
export interface StateSizes {
  /**
   * Words a bucket holds on average at most, for the capacity given: deciding filters a bucket at
   * a time with a table of 16 slots a word, which stays in a core's L2 (decide-words.ts).
   */
  bucketWords: number
  /** a chunk holds 2^chunkBits words */
  chunkBits: number
}

const SIZES: StateSizes = { bucketWords: 1 << 14, chunkBits: 8 }
/**
 * At most 4,096 buckets: the words being put in them (a cache line each) stay in a core's L2. A
 * state larger than 4,096 × bucketWords has larger buckets, which deciding still handles.
 */
const MAX_BUCKET_BITS = 12

/** Bucket of a word: the top bits of a hash of its code (file bits left out). */
function bucketHash (high: number, low: number): number {
  return Math.imul(high ^ Math.imul(low >>> WORD_FILE_BITS, 0x85ebca6b), 0x9e3779b1)
}

function bucketBits (capacity: number, sizes: StateSizes): number {
  return Math.min(MAX_BUCKET_BITS, Math.max(0, Math.ceil(Math.log2(capacity / sizes.bucketWords))))
}

export class PartitionState {
  readonly #sizes: StateSizes
  #words: StateWords
  #halves: Uint32Array
  /** the bucket's index is a word's bucketHash, top bits: shifted right once, then by this */
  #shift = 31
  /** chunks the buffer holds */
  #chunkCapacity = 0
  /** a whole `words` record, aligned, before its words go to their buckets */
  #record = new Uint32Array(0)

  /** `capacity` codes; known in advance from the manifests, but the state grows if it must. */
  constructor (capacity = 1024, sizes: StateSizes = SIZES) {
    this.#sizes = sizes
    this.#words = { buffer: new ArrayBuffer(0), length: 0, files: 0, chunkBits: sizes.chunkBits, chunks: 0, first: new Int32Array(0), next: new Int32Array(0), end: new Uint32Array(0) }
    this.#halves = new Uint32Array(0)
    this.reset(capacity)
  }

  /** Bytes the state holds for `capacity` codes: the words, a partly filled chunk a bucket, and the chunks' links. */
  static bytesFor (capacity: number, sizes: StateSizes = SIZES): number {
    const chunks = chunksFor(capacity, sizes)
    return chunks * 2 ** sizes.chunkBits * 8 + chunks * 4 + 2 ** bucketBits(capacity, sizes) * 8
  }

  /**
   * Hands the words over (to be transferred to a worker thread that decides them: Decider); the
   * state is unusable until `restore` gives them back.
   */
  release (): StateWords {
    const words = this.#words
    this.#words = { ...words, buffer: new ArrayBuffer(0), first: new Int32Array(0), next: new Int32Array(0), end: new Uint32Array(0) }
    this.#halves = new Uint32Array(0)
    return words
  }

  /** Takes the words back after `release`, as decideWords left them. */
  restore (words: StateWords): void {
    this.#words = words
    this.#halves = new Uint32Array(words.buffer)
  }

  get length (): number { return this.#words.length }

  /** Bytes held by the state's buffers. */
  get bytes (): number {
    const { buffer, first, next, end } = this.#words
    return buffer.byteLength + first.byteLength + next.byteLength + end.byteLength
  }

  /** Empties the state for the next partition, reusing its buffers when they are large enough. */
  reset (capacity: number): void {
    const bits = bucketBits(capacity, this.#sizes)
    const chunks = chunksFor(capacity, this.#sizes)
    const words = this.#words
    if (chunks > this.#chunkCapacity) {
      words.buffer = new ArrayBuffer(chunks * 2 ** words.chunkBits * 8)
      words.next = new Int32Array(chunks)
      this.#halves = new Uint32Array(words.buffer)
      this.#chunkCapacity = chunks
    }
    if (words.first.length !== 1 << bits) {
      words.first = new Int32Array(1 << bits)
      words.end = new Uint32Array(1 << bits)
    }
    words.first.fill(-1)
    words.end.fill(0)
    words.length = 0
    words.files = 0
    words.chunks = 0
    this.#shift = 31 - bits
  }

  add (hi: number, lo: number, fileIndex: number): void {
    this.#put(wordLow(lo) | fileIndex, wordHigh(hi, lo))
    this.#words.length++
    this.#words.files |= 1 << fileIndex
  }

  /**
   * Adds a `words` record (segments.ts): sort words as little-endian uint64, file bits zero. Each
   * word gets the file index and goes to its bucket; nothing is parsed per code. Returns false,
   * adding nothing, when a word's file bits are not zero (not such a record).
   */
  addWords (record: Uint8Array, fileIndex: number): boolean {
    const count = record.length / 8
    // The record lies anywhere in a fetched buffer: an aligned copy first, in the platform's order.
    if (this.#record.length < 2 * count) this.#record = new Uint32Array(2 * count)
    const source = this.#record
    new Uint8Array(source.buffer, 0, record.length).set(record)
    // Node's swap64 turns the little-endian words of the record into this platform's order.
    if (LOW !== 0) Buffer.from(source.buffer, 0, record.length).swap64()
    let fileBits = 0
    for (let i = 0; i < count; i++) fileBits |= source[2 * i + LOW]
    if ((fileBits & FILE_MASK) !== 0) return false

    const words = this.#words
    for (let i = scatter(source, 0, count, fileIndex, this.#halves, words.end, this.#shift, words.chunkBits); i < count;) {
      // The word i's bucket has no room left: a fresh chunk, and on.
      this.#put(source[2 * i + LOW] | fileIndex, source[2 * i + HIGH])
      i = scatter(source, i + 1, count, fileIndex, this.#halves, words.end, this.#shift, words.chunkBits)
    }
    words.length += count
    words.files |= 1 << fileIndex
    return true
  }

  /**
   * The codes seen in at least `minFiles` distinct files, sorted. The state stays as it is, or is
   * sorted in place (decideWords); call `reset` before adding again.
   */
  decide (minFiles: number): Decision {
    return decideWords(this.#words, minFiles)
  }

  /** Puts one word in its bucket (a fresh chunk when it must); `length` is the caller's. */
  #put (low: number, high: number): void {
    const words = this.#words
    const bucket = (bucketHash(high, low) >>> 1) >>> this.#shift
    let at = words.end[bucket]
    if ((at & ((1 << words.chunkBits) - 1)) === 0) at = this.#newChunk(bucket)
    this.#halves[2 * at + LOW] = low
    this.#halves[2 * at + HIGH] = high
    words.end[bucket] = at + 1
  }

  /** Links a fresh chunk to the bucket (growing the buffer when every chunk is taken); returns its first word. */
  #newChunk (bucket: number): number {
    const words = this.#words
    if (words.chunks === this.#chunkCapacity) this.#grow(Math.max(1, 2 * this.#chunkCapacity))
    const chunk = words.chunks++
    const at = words.end[bucket]
    if (words.first[bucket] === -1) words.first[bucket] = chunk
    else words.next[(at - 1) >>> words.chunkBits] = chunk
    words.next[chunk] = -1
    return chunk << words.chunkBits
  }

  #grow (chunks: number): void {
    const words = this.#words
    const buffer = new ArrayBuffer(chunks * 2 ** words.chunkBits * 8)
    new Uint8Array(buffer).set(new Uint8Array(words.buffer, 0, words.chunks * 2 ** words.chunkBits * 8))
    const next = new Int32Array(chunks)
    next.set(words.next.subarray(0, words.chunks))
    words.buffer = buffer
    words.next = next
    this.#halves = new Uint32Array(buffer)
    this.#chunkCapacity = chunks
  }
}

/**
 * Puts the words [from, count) of `source` in their buckets, with the file index, until one finds
 * its bucket's chunk full (or none yet); returns where it stopped (count when done).
 */
function scatter (source: Uint32Array, from: number, count: number, fileIndex: number, halves: Uint32Array, end: Uint32Array, shift: number, chunkBits: number): number {
  const chunkMask = (1 << chunkBits) - 1
  for (let i = from; i < count; i++) {
    const low = source[2 * i + LOW] | fileIndex
    const high = source[2 * i + HIGH]
    const bucket = (bucketHash(high, low) >>> 1) >>> shift
    const at = end[bucket]
    if ((at & chunkMask) === 0) return i
    halves[2 * at + LOW] = low
    halves[2 * at + HIGH] = high
    end[bucket] = at + 1
  }
  return count
}

/** Chunks for `capacity` words in any spread over the buckets: each bucket may leave one partly filled. */
function chunksFor (capacity: number, sizes: StateSizes): number {
  return Math.ceil(Math.max(1, capacity) / (1 << sizes.chunkBits)) + (1 << bucketBits(capacity, sizes))
}
