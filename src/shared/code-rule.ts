// The code rule (DESIGN section 2), in one place for the ingest, the generator's checks, the
// benchmarks and the API. A candidate code is a maximal run of ASCII letters and digits of length
// 8, 9 or 10 within a line; a run of 7 or 11+ yields nothing. Lines end with LF; whitespace (and
// CR) is never part of a run, so trimming and CRLF come for free and a run never spans two lines.
//
// The scanner works on bytes and never builds a string per code: at 313 million codes a string
// each is tens of GB of garbage.

export const MIN_CODE_LENGTH = 8
export const MAX_CODE_LENGTH = 10

/** The characters of a code: ASCII digits and letters, in ASCII order (code-packing relies on it). */
export const CODE_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** The rule in words, for error messages and the API's documentation. */
export const CODE_SHAPE = `${MIN_CODE_LENGTH} to ${MAX_CODE_LENGTH} ASCII letters or digits`

const LF = 0x0a

/** 1 for the bytes of CODE_ALPHABET, 0 for every other byte. */
export const ALNUM = new Uint8Array(256)
for (let i = 0; i < CODE_ALPHABET.length; i++) ALNUM[CODE_ALPHABET.charCodeAt(i)] = 1

/**
 * Called once per candidate code with the bytes [start, end) of `bytes`. The bytes are only valid
 * during the call (they may be the scanner's carry buffer): copy what you keep.
 */
export type OnCode = (bytes: Uint8Array, start: number, end: number) => void

/**
 * Streaming scanner over a byte stream of lines: feed it chunks in order, in any sizes; codes
 * split across chunks are reassembled in a small carry buffer. Memory is constant whatever the
 * input, including one enormous line without newlines.
 */
export class CodeScanner {
  /** newline-terminated lines, plus a last line without a newline when it is not empty */
  lines = 0
  codes = 0
  bytes = 0

  #carry = new Uint8Array(MAX_CODE_LENGTH)
  /** length of the alphanumeric run that reaches the end of the previous chunk */
  #run = 0
  /** whether the current (unterminated) line has any byte */
  #lineOpen = false

  push (chunk: Uint8Array, onCode: OnCode): void {
    const n = chunk.length
    if (n === 0) return
    this.bytes += n
    let i = 0

    // Finish the run carried over from the previous chunk.
    if (this.#run > 0) {
      while (i < n && ALNUM[chunk[i]] === 1) i++
      const total = this.#run + i
      if (i === n) {
        // The run goes on past this chunk too.
        if (total <= MAX_CODE_LENGTH) this.#carry.set(chunk, this.#run)
        this.#run = total
        this.#lineOpen = true
        return
      }
      if (total >= MIN_CODE_LENGTH && total <= MAX_CODE_LENGTH) {
        this.#carry.set(chunk.subarray(0, i), this.#run)
        this.codes++
        onCode(this.#carry, 0, total)
      }
      this.#run = 0
    }

    let lineOpen = this.#lineOpen || i > 0
    while (i < n) {
      const c = chunk[i]
      if (ALNUM[c] === 1) {
        const start = i
        while (i < n && ALNUM[chunk[i]] === 1) i++
        const length = i - start
        lineOpen = true
        if (i === n) {
          // The run may continue in the next chunk: keep it (or just its length when too long).
          if (length <= MAX_CODE_LENGTH) this.#carry.set(chunk.subarray(start, i), 0)
          this.#run = length
          break
        }
        if (length >= MIN_CODE_LENGTH && length <= MAX_CODE_LENGTH) {
          this.codes++
          onCode(chunk, start, i)
        }
      } else {
        if (c === LF) {
          this.lines++
          lineOpen = false
        } else {
          lineOpen = true
        }
        i++
      }
    }
    this.#lineOpen = lineOpen
  }

  /** Flushes a code that ends the input without a final newline. */
  end (onCode: OnCode): void {
    const run = this.#run
    if (run >= MIN_CODE_LENGTH && run <= MAX_CODE_LENGTH) {
      this.codes++
      onCode(this.#carry, 0, run)
    }
    this.#run = 0
    if (this.#lineOpen) this.lines++
    this.#lineOpen = false
  }
}

/**
 * The API's check of a requested code (already trimmed): exactly one code and nothing else.
 * Anything else can never be in the set, so it is answered without asking Redis.
 */
export function isCodeShape (code: string): boolean {
  if (code.length < MIN_CODE_LENGTH || code.length > MAX_CODE_LENGTH) return false
  // charCodeAt of a non-Latin-1 character is above 255: ALNUM has no entry, so it is refused too.
  for (let i = 0; i < code.length; i++) if (ALNUM[code.charCodeAt(i)] !== 1) return false
  return true
}
