import t from 'tap'
import { packCode, unpackCode } from '../../src/shared/code-packing.js'
import { decideWords, type Decision, type StateWords } from '../../src/aggregator/decide-words.js'
import { MAX_FILES, PartitionState } from '../../src/aggregator/partition-state.js'
import { randomCode, testRandom } from '../helpers/random-code.js'

// A state keeps its words in buckets of chunks; at their real sizes (2^14 and 2^8 words) a test
// state would have few of either, so these tests ask for small ones: buckets of 16 words on
// average, chunks of 4.
const SMALL = { bucketWords: 16, chunkBits: 2 }

interface Draws {
  state: PartitionState
  /** code -> the files it was drawn in */
  files: Map<string, Set<number>>
}

/** `count` draws of (code, file) from `pool`, into a state and into a string-keyed reference. */
function draw (pool: string[], count: number, fileCount: number, seed: number): Draws {
  const rng = testRandom(seed)
  const state = new PartitionState(count, SMALL)
  const files = new Map<string, Set<number>>()
  for (let i = 0; i < count; i++) {
    const code = pool[rng.below(pool.length)]
    const file = rng.below(fileCount)
    const { hi, lo } = packCode(code)
    state.add(hi, lo, file)
    let seen = files.get(code)
    if (seen === undefined) files.set(code, seen = new Set())
    seen.add(file)
  }
  return { state, files }
}

/** Packed codes sort like their strings. */
function expected ({ files }: Draws, minFiles: number): string[] {
  return [...files].filter(([, seen]) => seen.size >= minFiles).map(([code]) => code).sort()
}

/** The state's words, bucket by bucket, chunk by chunk, as a reader of StateWords walks them. */
function wordsOf ({ buffer, first, next, end, chunkBits }: StateWords): bigint[] {
  const all = new BigUint64Array(buffer)
  const words: bigint[] = []
  for (let bucket = 0; bucket < first.length; bucket++) {
    for (let chunk = first[bucket]; chunk !== -1; chunk = next[chunk]) {
      const to = next[chunk] === -1 ? end[bucket] : (chunk + 1) << chunkBits
      for (let i = chunk << chunkBits; i < to; i++) words.push(all[i])
    }
  }
  return words
}

/** The state's words and layout, without deciding. */
function peek (state: PartitionState): { words: bigint[], buckets: number, chunks: number } {
  const words = state.release()
  state.restore(words)
  return { words: wordsOf(words), buckets: words.first.length, chunks: words.chunks }
}

function decide ({ state }: Draws, minFiles: number): { codes: string[], decision: Decision, words: bigint[] } {
  const words = state.release()
  const decision = decideWords(words, minFiles)
  const codes: string[] = []
  for (let i = 0; i < decision.count; i++) codes.push(unpackCode(decision.pairs[2 * i], decision.pairs[2 * i + 1]))
  const after = wordsOf(words)
  state.restore(words)
  return { codes, decision, words: after }
}

function pool (size: number, seed: number): string[] {
  const rng = testRandom(seed)
  return Array.from({ length: size }, () => randomCode(rng))
}

t.test('over many buckets, keeps exactly the codes a string-based reference keeps, sorting only a few words', async (t) => {
  // 40,000 draws from 400,000 codes in three files: most codes are in one file only.
  const draws = draw(pool(400_000, 1), 40_000, 3, 2)
  const { words: before, buckets, chunks } = peek(draws.state)
  t.ok(buckets >= 1024 && chunks >= 10_000, `the words are spread over ${buckets} buckets and ${chunks} chunks`)
  for (const minFiles of [2, 3]) {
    const { codes, decision, words } = decide(draws, minFiles)
    t.same(codes, expected(draws, minFiles), `minFiles=${minFiles}: ${codes.length} codes`)
    t.ok(decision.sorted < draws.state.length / 4, `minFiles=${minFiles}: ${decision.sorted} of ${draws.state.length} words reached the sort`)
    t.same(words, before, `minFiles=${minFiles}: the state is left as it was, so it can be decided again`)
  }
})

t.test('sorts the whole state in place when most codes are wanted, and when MIN_FILES is 1', async (t) => {
  // 40,000 draws from 2,000 codes in three files: nearly every code is in two files or more.
  const draws = draw(pool(2_000, 3), 40_000, 3, 4)
  const before = peek(draws.state).words
  for (const minFiles of [1, 2]) {
    const { codes, decision, words } = decide(draws, minFiles)
    t.same(codes, expected(draws, minFiles), `minFiles=${minFiles}: ${codes.length} codes`)
    t.equal(decision.sorted, draws.state.length, `minFiles=${minFiles}: every word reached the sort`)
    t.same(words, [...before].sort((a, b) => a < b ? -1 : a > b ? 1 : 0), `minFiles=${minFiles}: the state is left as its words, sorted, in one bucket`)
  }
  // Sorted whole once, the state is one bucket: the filter still decides it (and gives up again here).
  t.same(decide(draws, 3).codes, expected(draws, 3), 'minFiles=3 after a whole sort')
})

t.test('file indexes above 7 count as their own files (a 16-bit filter)', async (t) => {
  const draws = draw(pool(300_000, 5), 30_000, MAX_FILES, 6)
  for (const minFiles of [2, 3]) {
    const { codes, decision } = decide(draws, minFiles)
    t.same(codes, expected(draws, minFiles), `minFiles=${minFiles}: ${codes.length} codes`)
    t.ok(decision.sorted < draws.state.length, `minFiles=${minFiles}: ${decision.sorted} of ${draws.state.length} words reached the sort`)
  }
  // Files 0 and 8 share a bit in an 8-bit mask; they must not count as one file.
  const state = new PartitionState(16, SMALL)
  for (const [code, file] of [['EIGHTAPART', 0], ['EIGHTAPART', 8], ['ONEFILE8', 8]] as const) {
    const { hi, lo } = packCode(code)
    state.add(hi, lo, file)
  }
  t.same(decide({ state, files: new Map() }, 2).codes, ['EIGHTAPART'])
})

t.test('a code repeated far more than a bucket holds stays one code', async (t) => {
  const draws = draw(pool(5_000, 7), 8_000, 3, 8)
  const { hi, lo } = packCode('REPEATED1')
  for (let i = 0; i < 6_000; i++) draws.state.add(hi, lo, 0)
  draws.files.set('REPEATED1', new Set([0]))
  const once = decide(draws, 2).codes
  t.same(once, expected(draws, 2), 'in one file: not kept')
  draws.state.add(hi, lo, 2)
  draws.files.get('REPEATED1')?.add(2)
  t.same(decide(draws, 2).codes, expected(draws, 2), 'then in a second file: kept once')
})

t.test('an empty or one-word state decides nothing', async (t) => {
  for (const minFiles of [1, 2]) t.equal(new PartitionState(0).decide(minFiles).count, 0, `minFiles=${minFiles}`)
  const state = new PartitionState(1)
  const { hi, lo } = packCode('LONELY88')
  state.add(hi, lo, 1)
  t.same(decide({ state, files: new Map() }, 2).codes, [])
})
