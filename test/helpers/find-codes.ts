// The candidate codes of one line as strings: the production CodeScanner, wrapped so that tests can
// state the code rule and compute expected codes with plain strings. The pipeline never needs it
// (it scans bytes and never builds a string per code), so it lives here and not in src/.
import { CodeScanner, type OnCode } from '../../src/shared/code-rule.js'

export function findCodes (line: string): string[] {
  const codes: string[] = []
  const scanner = new CodeScanner()
  const decoder = new TextDecoder()
  const collect: OnCode = (bytes, start, end) => { codes.push(decoder.decode(bytes.subarray(start, end))) }
  scanner.push(Buffer.from(line, 'utf8'), collect)
  scanner.end(collect)
  return codes
}
