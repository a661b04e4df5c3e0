// The floor of every ingest figure: read a gz file through the ingest's own reader and find its
// codes with the shared scanner, nothing else (no Kafka, no Redis). Run as a script it scans one
// file and prints JSON, so bench:e2e can scan the three files in parallel processes, started with the
// Node flags of the processes it is compared with (src/shared/node-flags.ts).
import { execFile } from 'node:child_process'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { openGzip } from '../../src/ingest/read-gzip.js'
import { CodeScanner } from '../../src/shared/code-rule.js'
import { NODE_FLAGS } from '../../src/shared/node-flags.js'

export interface ScanCounts {
  /** gzipped bytes */
  compressed: number
  /** decompressed bytes */
  uncompressed: number
  lines: number
  codes: number
}

export async function scanFloor (path: string): Promise<ScanCounts> {
  const scanner = new CodeScanner()
  const onCode = (): void => {}
  const gzip = await openGzip(basename(path), path)
  for await (const chunk of gzip) scanner.push(chunk, onCode)
  scanner.end(onCode)
  return { compressed: gzip.bytesTotal, uncompressed: scanner.bytes, lines: scanner.lines, codes: scanner.codes }
}

export interface ScanFigures extends ScanCounts {
  seconds: number
  peakRssMb: number
}

const SELF = fileURLToPath(import.meta.url)

/** The floor of one file measured in a process of its own, so its peak RSS is its own. */
export async function scanFloorInChild (path: string): Promise<ScanFigures> {
  const { stdout } = await promisify(execFile)(process.execPath, [...NODE_FLAGS, '--import', 'tsx', SELF, path], { maxBuffer: 1 << 20 })
  return JSON.parse(stdout) as ScanFigures
}

if (process.argv[1] === SELF) {
  const started = performance.now()
  const counts = await scanFloor(process.argv[2])
  const figures: ScanFigures = { ...counts, seconds: (performance.now() - started) / 1000, peakRssMb: process.resourceUsage().maxRSS / 1024 }
  console.log(JSON.stringify(figures))
}
