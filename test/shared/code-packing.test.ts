import t from 'tap'
import { PackedCodes, PackingScanner, packCode, packHi, packLo, partitionOf, unpackCode, writeCode } from '../../src/shared/code-packing.js'
import { CodeScanner } from '../../src/shared/code-rule.js'
import { randomCode, testRandom } from '../helpers/random-code.js'

t.test('packing then unpacking gives back 100,000 random codes', async (t) => {
  let failures = 0
  for (let i = 0; i < 100_000; i++) {
    const code = randomCode()
    const { hi, lo } = packCode(code)
    if (unpackCode(hi, lo) !== code) failures++
  }
  t.equal(failures, 0)
})

t.test('the edge codes round-trip and both halves stay below 2^30', async (t) => {
  for (const code of ['00000000', 'zzzzzzzzzz', '0000000000', 'zzzzzzzz', 'OVER9000', 'OVER900000', 'happyhrs', 'HAPPYHRS']) {
    const { hi, lo } = packCode(code)
    t.equal(unpackCode(hi, lo), code, code)
    t.ok(hi >= 0 && hi < 2 ** 30 && lo >= 0 && lo < 2 ** 30, `${code} halves in range`)
  }
})

t.test('codes that differ only in length or case never collide', async (t) => {
  const pairs = [['OVER9000', 'OVER900000'], ['BUYGETON', 'BUYGETONE'], ['HAPPYHRS', 'happyhrs'], ['00000000', '000000000'], ['AAAAAAAA', 'AAAAAAAA0']]
  for (const [a, b] of pairs) {
    const pa = packCode(a)
    const pb = packCode(b)
    t.not(`${pa.hi}:${pa.lo}`, `${pb.hi}:${pb.lo}`, `${a} vs ${b}`)
  }
})

t.test('comparing packed codes (hi, then lo) orders them like their strings', async (t) => {
  const codes = Array.from({ length: 5000 }, () => randomCode()).concat(['OVER9000', 'OVER90000', 'OVER900000', 'OVER9001'])
  const byString = [...codes].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const byPacked = [...codes].sort((a, b) => {
    const pa = packCode(a)
    const pb = packCode(b)
    return pa.hi - pb.hi || pa.lo - pb.lo
  })
  t.same(byPacked, byString)
})

t.test('packing from a byte range equals packing the string', async (t) => {
  const line = Buffer.from('xx  GNULINUX\n', 'latin1')
  const { hi, lo } = packCode('GNULINUX')
  t.equal(packHi(line, 4, 12), hi)
  t.equal(packLo(line, 4, 12), lo)
})

t.test('writeCode writes the bytes and returns the length', async (t) => {
  const out = Buffer.alloc(16, '.')
  const { hi, lo } = packCode('BUYGETONE')
  t.equal(writeCode(hi, lo, out, 3), 9)
  t.equal(out.toString('latin1'), '...BUYGETONE....')
})

t.test('packCode refuses what is not a code', async (t) => {
  t.throws(() => packCode('OVER-9000'), RangeError)
  t.throws(() => packCode('ELEVENCHARS'), RangeError)
  t.throws(() => packCode('SEVEN77'), RangeError)
})

t.test('partitions spread codes evenly and are stable', async (t) => {
  const partitions = 8
  const counts = new Array<number>(partitions).fill(0)
  const n = 80_000
  for (let i = 0; i < n; i++) {
    const { hi, lo } = packCode(randomCode())
    counts[partitionOf(hi, lo, partitions)]++
  }
  for (const count of counts) t.ok(Math.abs(count - n / partitions) < n / partitions * 0.05, `partition holds ${count} of ${n}`)
  const { hi, lo } = packCode('HAPPYHRS')
  t.equal(partitionOf(hi, lo, 1), 0, 'one partition holds everything')
})

t.test('the partition of a code never changes: data already in Kafka depends on it', async (t) => {
  // Pinned values: a change of the hash would scatter codes already produced across other
  // partitions than the ones newly produced codes go to, and co-partitioning would silently break.
  const pinned: Array<[string, number, number]> = [['HAPPYHRS', 1, 1], ['OVER9000', 4, 0], ['HAPPYHOURS', 0, 0], ['BUYGETONE', 0, 4]]
  for (const [code, of8, of12] of pinned) {
    const { hi, lo } = packCode(code)
    t.equal(partitionOf(hi, lo, 8), of8, `${code} is in partition ${of8} of 8`)
    t.equal(partitionOf(hi, lo, 12), of12, `${code} is in partition ${of12} of 12`)
  }
})

/** Text with runs of 1 to 14 letters and digits, separated by what the code rule sees as breaks. */
function messyText (seed: number, lines: number): Buffer {
  const rng = testRandom(seed)
  const separators = [' ', '\t', '-', '\r', '.', 'é', ',']
  const parts: string[] = []
  for (let line = 0; line < lines; line++) {
    const runs = rng.below(4)
    for (let r = 0; r < runs; r++) {
      if (r > 0 || rng.below(4) === 0) parts.push(separators[rng.below(separators.length)])
      const code = randomCode(rng)
      const length = 1 + rng.below(14)
      parts.push(length <= code.length ? code.slice(0, length) : code + code.slice(0, length - code.length))
    }
    if (line < lines - 1 || rng.below(2) === 0) parts.push(rng.below(5) === 0 ? '\r\n' : '\n')
  }
  return Buffer.from(parts.join(''), 'utf8')
}

t.test('PackingScanner finds what CodeScanner finds, packed, in order, with the same counts, however the input is chunked', async (t) => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const text = messyText(seed, 3_000)
    const expected: number[] = []
    const reference = new CodeScanner()
    const onCode = (bytes: Uint8Array, start: number, end: number): void => { expected.push(packHi(bytes, start, end), packLo(bytes, start, end)) }
    reference.push(text, onCode)
    reference.end(onCode)
    // Chunks from 1 byte (no LF, or one) to 400 (many whole lines).
    const rng = testRandom(100 + seed)
    // One partition, records of 1 to 40 codes: every chunk's whole lines fill several.
    const got: number[] = []
    const capacity = 2 * (1 + rng.below(40))
    const codes = new PackedCodes([new Uint32Array(capacity)], capacity, 'halves')
    const makeRoom = (partition: number): void => {
      t.equal(partition, 0)
      got.push(...codes.records[0].subarray(0, codes.fill[0]))
      codes.fill[0] = 0
    }
    const scanner = new PackingScanner()
    for (let at = 0; at < text.length;) {
      const size = 1 + rng.below(rng.below(2) === 0 ? 12 : 400)
      scanner.pushPacked(text.subarray(at, at + size), codes, makeRoom)
      at += size
    }
    scanner.endPacked(codes, makeRoom)
    makeRoom(0)
    t.ok(reference.codes > 500, `seed ${seed}: ${reference.codes} codes in ${reference.lines} lines`)
    t.same(got, expected, `seed ${seed}: the same packed codes`)
    t.same([scanner.lines, scanner.codes, scanner.bytes], [reference.lines, reference.codes, reference.bytes], `seed ${seed}: the same counts`)
  }
})
