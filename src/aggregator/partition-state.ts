// The aggregator's per-partition state (DESIGN sections 1 and 5): every code read from every
// file's segment in one partition, as one packed 64-bit word each, in one typed array. Deciding
// (decide-words.ts) permutes the words in place and lets only the few codes seen in more than one
// file reach a sort; only the small valid set ever leaves, as pairs of integers.
//
// Word layout (code-packing's sort word), most significant bit first: hi (30 bits) | lo (30 bits) |
// file index (4 bits). Sorting the words orders them by code, then by file, so the entries of one
// code are adjacent. The words are written and read through an aliasing Uint32Array: numbers,
// never BigInts, per code.
import { LITTLE_ENDIAN, WORD_FILE_BITS, wordHigh, wordLow } from '../shared/code-packing.js'
import { decideWords, type Decision } from './decide-words.js'

/** File indexes fit in the word's 4 file bits, and the files-seen bitmask in 16. */
export const MAX_FILES = 1 << WORD_FILE_BITS

const FILE_MASK = MAX_FILES - 1

// Which Uint32 of each 64-bit word holds its low half depends on the platform's byte order.
const LOW = LITTLE_ENDIAN ? 0 : 1
const HIGH = LITTLE_ENDIAN ? 1 : 0

export class PartitionState {
  #words: BigUint64Array
  #halves: Uint32Array
  #length = 0

  /** `capacity` codes; known in advance from the manifests, but the state grows if it must. */
  constructor (capacity = 1024) {
    this.#words = new BigUint64Array(Math.max(1, capacity))
    this.#halves = new Uint32Array(this.#words.buffer)
  }

  /**
   * Hands the words' buffer over (to be transferred to a worker thread that decides it: Decider);
   * the state is unusable until `restore` gives it back. The first `length` words are the state.
   */
  release (): ArrayBuffer {
    const buffer = this.#words.buffer as ArrayBuffer
    this.#words = new BigUint64Array(0)
    this.#halves = new Uint32Array(0)
    return buffer
  }

  /** Takes the buffer back after `release`, its words as decideWords left them. */
  restore (buffer: ArrayBuffer): void {
    this.#words = new BigUint64Array(buffer)
    this.#halves = new Uint32Array(buffer)
  }

  get length (): number { return this.#length }

  /** Bytes held by the state's buffer. */
  get bytes (): number { return this.#words.byteLength }

  /** Empties the state for the next partition, reusing the buffer when it is large enough. */
  reset (capacity: number): void {
    this.#length = 0
    if (capacity > this.#words.length) this.#resize(capacity)
  }

  add (hi: number, lo: number, fileIndex: number): void {
    if (this.#length === this.#words.length) this.#resize(this.#length * 2)
    const at = this.#length++ * 2
    this.#halves[at + LOW] = wordLow(lo) | fileIndex
    this.#halves[at + HIGH] = wordHigh(hi, lo)
  }

  /**
   * Adds a `words` record (segments.ts): sort words as little-endian uint64, file bits zero. They
   * are copied as one block and the file index is set in each; nothing is parsed per code. Returns
   * false, adding nothing, when a word's file bits are not zero (not such a record).
   */
  addWords (record: Uint8Array, fileIndex: number): boolean {
    const count = record.length / 8
    if (this.#length + count > this.#words.length) this.#resize(Math.max(this.#length * 2, this.#length + count))
    const from = this.#length * 2
    new Uint8Array(this.#words.buffer, this.#length * 8, record.length).set(record)
    // Node's swap64 turns the little-endian words of the record into this platform's order.
    if (LOW !== 0) Buffer.from(this.#words.buffer, this.#length * 8, record.length).swap64()
    const halves = this.#halves
    const to = from + count * 2
    let fileBits = 0
    for (let at = from + LOW; at < to; at += 2) {
      fileBits |= halves[at]
      halves[at] |= fileIndex
    }
    if ((fileBits & FILE_MASK) !== 0) return false
    this.#length += count
    return true
  }

  /**
   * The codes seen in at least `minFiles` distinct files, sorted. Permutes the state in place; call
   * `reset` before adding again.
   */
  decide (minFiles: number): Decision {
    return decideWords(this.#words.buffer, this.#length, minFiles)
  }

  #resize (capacity: number): void {
    const words = new BigUint64Array(capacity)
    words.set(this.#words.subarray(0, this.#length))
    this.#words = words
    this.#halves = new Uint32Array(words.buffer)
  }
}
