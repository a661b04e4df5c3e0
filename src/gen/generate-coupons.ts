// `coupons gen`: writes synthetic couponbase1..3.gz with the shape of the real files (DESIGN
// section 1) and an answer key, streaming in constant memory. Random codes are written straight
// into chunk buffers (no string per line); gzip runs on libuv's thread pool, the three files in
// parallel. Each file is written under a temporary name and renamed when complete, so a crashed
// run never leaves a truncated file that looks finished.
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { FILE_SHAPES, NEAR_MISS_DECOYS, REAL_PLANTED, type FileShape } from './coupon-files.js'
import { Sfc32 } from './random.js'

export interface GenerateOptions {
  outDir: string
  /** fraction of the real files' line counts (1 = 313M lines) */
  scale: number
  seed: number
  /** synthetic planted codes besides the real ones, spread over every combination of files */
  extra?: number
  /** gzip level, 1 (fast) to 9 */
  level?: number
  onProgress?: (file: string, linesWritten: number, totalLines: number) => void
}

export interface AnswerKey {
  seed: number
  scale: number
  /** the rule the `valid` list follows */
  minFiles: 2
  files: Record<string, { lines: number, codeLength: number }>
  /** every planted code and the files that hold it */
  planted: Record<string, string[]>
  /** planted codes in at least two files, sorted */
  valid: string[]
  /** planted codes in exactly one file, sorted */
  decoys: string[]
}

/** A decoy written many times into file 1 only: files are counted, not occurrences. */
const REPEATED_DECOY = { code: 'REPEAT50', file: 1, times: 50 }
const ALPHABET = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 'latin1')
const BASE = ALPHABET.length
/** 5 base-36 digits from one 32-bit draw; draws at or above this are rejected to stay unbiased */
const DRAW_LIMIT = Math.floor(0x1_0000_0000 / BASE ** 5) * BASE ** 5
const CHUNK_LINES = 1 << 16
const SUBSETS: readonly number[][] = [[1, 2], [1, 3], [2, 3], [1, 2, 3], [1], [2], [3]]

interface FilePlan {
  shape: FileShape
  lines: number
  /** line index -> planted code, sorted by line */
  planted: Array<[line: number, code: string]>
}

export async function generateCoupons (options: GenerateOptions): Promise<AnswerKey> {
  const { outDir, scale, seed, extra = 24, level = 6, onProgress } = options
  if (!(scale > 0)) throw new RangeError(`--scale must be a positive number, got ${scale}`)
  if (!Number.isInteger(seed)) throw new RangeError(`--seed must be an integer, got ${seed}`)
  const rng = new Sfc32(seed)
  const plans = planFiles(rng, scale, extra)
  await mkdir(outDir, { recursive: true })
  await Promise.all(plans.map((plan, i) => writeFile_(join(outDir, plan.shape.name), plan, new Sfc32(seed * 31 + i + 1), level, onProgress)))

  const planted: Record<string, string[]> = {}
  for (const plan of plans) {
    for (const [, code] of plan.planted) {
      const files = (planted[code] ??= [])
      if (!files.includes(plan.shape.name)) files.push(plan.shape.name)
    }
  }
  const codes = Object.keys(planted).sort()
  const key: AnswerKey = {
    seed,
    scale,
    minFiles: 2,
    files: Object.fromEntries(plans.map((plan) => [plan.shape.name, { lines: plan.lines, codeLength: plan.shape.codeLength }])),
    planted: Object.fromEntries(codes.map((code) => [code, planted[code].sort()])),
    valid: codes.filter((code) => planted[code].length >= 2),
    decoys: codes.filter((code) => planted[code].length === 1)
  }
  const keyPath = join(outDir, 'answers.json')
  await writeFile(`${keyPath}.tmp`, JSON.stringify(key, null, 2) + '\n')
  await rename(`${keyPath}.tmp`, keyPath)
  return key
}

/**
 * Where each planted code goes. The real codes are the last lines of each file, exactly as in the
 * real files (files 2 and 3 end with 8 lines of 8 characters); near misses, the repeated decoy and
 * the synthetic extras sit at random lines of a window just before them.
 */
function planFiles (rng: Sfc32, scale: number, extra: number): FilePlan[] {
  const tails: string[][] = [[], [], []]
  const windows: string[][] = [[], [], []]
  for (const [code, files] of REAL_PLANTED) for (const f of files) tails[f - 1].push(code)
  for (const [code, f] of NEAR_MISS_DECOYS) windows[f - 1].push(code)
  for (let i = 0; i < REPEATED_DECOY.times; i++) windows[REPEATED_DECOY.file - 1].push(REPEATED_DECOY.code)

  const taken = new Set<string>([...REAL_PLANTED.map(([code]) => code), ...NEAR_MISS_DECOYS.map(([code]) => code), REPEATED_DECOY.code])
  for (let i = 0; i < extra; i++) {
    const files = SUBSETS[i % SUBSETS.length]
    // A code shared with file 1 has file 1's length; others take the length of one of their files.
    const length = FILE_SHAPES[files[rng.below(files.length)] - 1].codeLength
    let code: string
    do { code = randomCode(rng, length) } while (taken.has(code))
    taken.add(code)
    for (const f of files) windows[f - 1].push(code)
  }

  return FILE_SHAPES.map((shape, i) => {
    const tail = rng.shuffle(tails[i])
    const window = windows[i]
    const lines = Math.max(tail.length + window.length, Math.round(shape.realLines * scale))
    const windowEnd = lines - tail.length
    const windowSize = Math.min(windowEnd, Math.max(1000, 20 * window.length))
    const positions = new Set<number>()
    while (positions.size < window.length) positions.add(windowEnd - 1 - rng.below(windowSize))
    const planted: Array<[number, string]> = [...positions].map((line, j) => [line, window[j]])
    tail.forEach((code, j) => planted.push([windowEnd + j, code]))
    planted.sort((a, b) => a[0] - b[0])
    return { shape, lines, planted }
  })
}

function randomCode (rng: Sfc32, length: number): string {
  const out = Buffer.alloc(length)
  writeRandomCode(rng, out, 0, length)
  return out.toString('latin1')
}

function writeRandomCode (rng: Sfc32, out: Uint8Array, at: number, length: number): void {
  let written = 0
  while (written < length) {
    let draw = rng.next()
    if (draw >= DRAW_LIMIT) continue
    for (let k = 0; k < 5 && written < length; k++) {
      out[at + written++] = ALPHABET[draw % BASE]
      draw = Math.floor(draw / BASE)
    }
  }
}

async function writeFile_ (path: string, plan: FilePlan, rng: Sfc32, level: number, onProgress: GenerateOptions['onProgress']): Promise<void> {
  const { shape, lines, planted } = plan
  const lineBytes = Math.max(shape.codeLength, ...planted.map(([, code]) => code.length)) + 1

  function * chunks (): Generator<Buffer> {
    let next = 0
    for (let start = 0; start < lines; start += CHUNK_LINES) {
      const end = Math.min(lines, start + CHUNK_LINES)
      const buf = Buffer.allocUnsafe((end - start) * lineBytes)
      let p = 0
      for (let line = start; line < end; line++) {
        if (next < planted.length && planted[next][0] === line) {
          p += buf.write(planted[next][1], p, 'latin1')
          next++
        } else {
          writeRandomCode(rng, buf, p, shape.codeLength)
          p += shape.codeLength
        }
        buf[p++] = 0x0a
      }
      onProgress?.(shape.name, end, lines)
      yield buf.subarray(0, p)
    }
  }

  const tmp = `${path}.partial`
  try {
    await pipeline(Readable.from(chunks(), { objectMode: false }), createGzip({ level }), createWriteStream(tmp))
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}
