import t from 'tap'
import { CodeScanner, isCodeShape, type OnCode } from '../../src/shared/code-rule.js'
import { findCodes } from '../helpers/find-codes.js'

/** Scans `input` split into chunks at the given sizes (cycled) and returns codes and counts. */
function scan (input: string, chunkSizes: number[] = [input.length || 1]) {
  const scanner = new CodeScanner()
  const codes: string[] = []
  const collect: OnCode = (bytes, start, end) => { codes.push(Buffer.from(bytes.subarray(start, end)).toString('latin1')) }
  const bytes = Buffer.from(input, 'latin1')
  for (let at = 0, k = 0; at < bytes.length; k++) {
    const size = chunkSizes[k % chunkSizes.length]
    scanner.push(bytes.subarray(at, at + size), collect)
    at += size
  }
  scanner.end(collect)
  return { codes, lines: scanner.lines, counted: scanner.codes }
}

t.test('a line that is one code of 8, 9 or 10 characters yields it', async (t) => {
  t.same(findCodes('OVER9000'), ['OVER9000'])
  t.same(findCodes('BUYGETONE'), ['BUYGETONE'])
  t.same(findCodes('HAPPYHOURS'), ['HAPPYHOURS'])
})

t.test('runs of 7 or 11+ characters yield nothing, never a cut-out substring', async (t) => {
  t.same(findCodes('SEVEN77'), [])
  t.same(findCodes('ELEVENCHARS'), [])
  t.same(findCodes('A'.repeat(500)), [])
})

t.test('surrounding spaces, tabs and CR are trimmed', async (t) => {
  t.same(findCodes('  \tFIFTYOFF \r'), ['FIFTYOFF'])
  t.same(scan('GNULINUX\r\nHAPPYHRS\r\n').codes, ['GNULINUX', 'HAPPYHRS'])
})

t.test('every maximal run of the right length within a line is a candidate', async (t) => {
  t.same(findCodes('BIRTHDAY,SIXTYOFF;short;TOOLONGTOBEACODE OVER9000'), ['BIRTHDAY', 'SIXTYOFF', 'OVER9000'])
  t.same(findCodes('FREE-ZAAA1'), [], 'a hyphen splits FREE-ZAAA1 into runs of 4 and 5')
  t.same(findCodes('héllo123ABCDEFGH'), [], 'the é splits the line into runs of 1 and 14 characters')
  t.same(findCodes('héABCDEFGH'), ['ABCDEFGH'], 'a run after a non-ASCII byte starts fresh')
})

t.test('case is kept exactly as in the input', async (t) => {
  t.same(findCodes('happyhrs'), ['happyhrs'])
})

t.test('codes split across chunks at every possible boundary are reassembled', async (t) => {
  const input = 'BIRTHDAY\nshort\nOVER900000\nELEVENCHARS\n  FIFTYOFF  \r\nBUYGETONE'
  const expected = ['BIRTHDAY', 'OVER900000', 'FIFTYOFF', 'BUYGETONE']
  for (let size = 1; size <= input.length; size++) {
    const { codes, lines } = scan(input, [size])
    t.same(codes, expected, `chunks of ${size} bytes`)
    t.equal(lines, 6, `chunks of ${size} bytes count 6 lines`)
  }
  t.same(scan(input, [3, 1, 7, 2]).codes, expected, 'uneven chunk sizes')
})

t.test('an overlong run split across chunks yields nothing', async (t) => {
  t.same(scan('ABCDEFGHIJKLMNOP\nOVER9000\n', [4]).codes, ['OVER9000'])
  t.same(scan('ABCDEFGHIJK', [10, 1]).codes, [], 'an 11th character in the next chunk cancels a 10-character run')
})

t.test('one enormous line without newlines keeps memory bounded and yields nothing', async (t) => {
  const scanner = new CodeScanner()
  const chunk = Buffer.alloc(1 << 20, 'A'.charCodeAt(0))
  let codes = 0
  for (let i = 0; i < 64; i++) scanner.push(chunk, () => { codes++ })
  scanner.end(() => { codes++ })
  t.equal(codes, 0)
  t.equal(scanner.lines, 1)
  t.equal(scanner.bytes, 64 << 20)
})

t.test('lines are counted with or without a final newline, and an empty input has none', async (t) => {
  t.equal(scan('').lines, 0)
  t.equal(scan('\n').lines, 1)
  t.equal(scan('OVER9000').lines, 1)
  t.equal(scan('OVER9000\nSUPER100').lines, 2)
  t.equal(scan('OVER9000\nSUPER100\n').lines, 2)
})

t.test('the scanner counts the codes it reports', async (t) => {
  const { codes, counted } = scan('OVER9000 SUPER100\nx\nHAPPYHRS')
  t.equal(counted, codes.length)
  t.equal(counted, 3)
})

t.test('isCodeShape accepts exactly one 8-10 character ASCII alphanumeric code', async (t) => {
  for (const good of ['OVER9000', 'BUYGETONE', 'HAPPYHOURS', 'happyhrs']) t.ok(isCodeShape(good), good)
  for (const bad of ['', 'SEVEN77', 'ELEVENCHARS', 'OVER 9000', 'ÖVER9000', 'OVER9000\n', '../../etc', "' OR 1=1", 'OVER%009000']) {
    t.notOk(isCodeShape(bad), JSON.stringify(bad))
  }
})
