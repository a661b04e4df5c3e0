import t from 'tap'
import { packCode, unpackCode } from '../../src/shared/code-packing.js'
import type { PackedCodes } from '../../src/aggregator/decide-words.js'
import { MAX_FILES, PartitionState } from '../../src/aggregator/partition-state.js'
import { Sfc32 } from '../../src/gen/random.js'
import { randomCode } from '../helpers/random-code.js'

function add (state: PartitionState, code: string, file: number): void {
  const { hi, lo } = packCode(code)
  state.add(hi, lo, file)
}

function codes (packed: PackedCodes): string[] {
  const out: string[] = []
  for (let i = 0; i < packed.count; i++) out.push(unpackCode(packed.pairs[2 * i], packed.pairs[2 * i + 1]))
  return out
}

t.test('keeps the codes seen in at least two files, counting files and not occurrences', async (t) => {
  const state = new PartitionState(4)
  for (let i = 0; i < 50; i++) add(state, 'REPEAT50', 0)
  add(state, 'BIRTHDAY', 0)
  add(state, 'BIRTHDAY', 1)
  add(state, 'BIRTHDAY', 2)
  add(state, 'HAPPYHRS', 0)
  add(state, 'HAPPYHRS', 2)
  add(state, 'SUPER100', 0)
  add(state, 'MOODYHRS', 1)
  add(state, 'happyhrs', 1)
  t.same(codes(state.decide(2)), ['BIRTHDAY', 'HAPPYHRS'])
})

t.test('MIN_FILES=3 keeps only the codes in all three files', async (t) => {
  const state = new PartitionState()
  for (const file of [0, 1, 2]) add(state, 'FIFTYOFF', file)
  add(state, 'HAPPYHRS', 0)
  add(state, 'HAPPYHRS', 2)
  t.same(codes(state.decide(3)), ['FIFTYOFF'])
})

t.test('codes that differ only in length or in their last characters stay apart', async (t) => {
  const state = new PartitionState()
  for (const [code, file] of [['OVER9000', 0], ['OVER900000', 1], ['OVER9000zz', 2], ['OVER9000zy', 1], ['zzzzzzzzzz', 0], ['zzzzzzzzzz', 15]] as const) add(state, code, file)
  t.same(codes(state.decide(2)), ['zzzzzzzzzz'])
})

t.test('every file index up to the maximum counts as its own file', async (t) => {
  const state = new PartitionState()
  for (let file = 0; file < MAX_FILES; file++) add(state, 'ALLFILES1', file)
  add(state, 'TWOFILES', 14)
  add(state, 'TWOFILES', 15)
  t.same(codes(state.decide(MAX_FILES)), ['ALLFILES1'])
  state.reset(10)
  for (let file = 0; file < MAX_FILES; file++) add(state, 'ALLFILES1', file)
  add(state, 'TWOFILES', 14)
  add(state, 'TWOFILES', 15)
  t.same(codes(state.decide(2)), ['ALLFILES1', 'TWOFILES'])
})

t.test('agrees with a string-based reference on 60,000 random codes, growing past its capacity', async (t) => {
  const rng = new Sfc32(42)
  const state = new PartitionState(16)
  const files = new Map<string, Set<number>>()
  // 60,000 draws from 20,000 codes: most codes come several times, often more than once per file.
  const pool = Array.from({ length: 20_000 }, () => randomCode(rng))
  for (let i = 0; i < 60_000; i++) {
    const code = pool[rng.below(pool.length)]
    const file = rng.below(3)
    add(state, code, file)
    let seen = files.get(code)
    if (seen === undefined) files.set(code, seen = new Set())
    seen.add(file)
  }
  t.equal(state.length, 60_000)
  // Chunks of 256 words, doubled from the two that 16 codes need (one bucket) to 256.
  t.equal(state.bytes, 256 * 256 * 8 + 256 * 4 + 4 + 4, 'grew by doubling its chunks')
  const pairs = [...files.values()].reduce((sum, seen) => sum + seen.size, 0)
  t.ok(pairs < 60_000, `${60_000 - pairs} draws repeat a code in a file it was already in`)
  // Deciding sorts the grown state in place and leaves its codes there, so it can decide again.
  for (const minFiles of [1, 2, 3]) {
    // Packed codes sort like their strings.
    const expected = [...files].filter(([, seen]) => seen.size >= minFiles).map(([code]) => code).sort()
    t.same(codes(state.decide(minFiles)), expected, `minFiles=${minFiles}: ${expected.length} codes`)
  }
})

t.test('says in advance how many bytes a state of a given capacity holds', async (t) => {
  for (const capacity of [0, 1, 1000, 100_000, 3_000_000]) t.equal(new PartitionState(capacity).bytes, PartitionState.bytesFor(capacity), `${capacity} codes`)
  t.ok(PartitionState.bytesFor(37_000_000) < 37_000_000 * 8 * 1.04, 'the chunks add less than 4 % to a full-size partition\'s words')
})

t.test('an empty partition decides nothing', async (t) => {
  const state = new PartitionState(0)
  t.equal(state.decide(2).count, 0)
})
