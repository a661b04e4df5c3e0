// Where the benchmarks keep their generated coupon files: one folder per scale, generated once
// and shared by bench:ingest, bench:aggregate and bench:e2e (scale 1 takes ~80 s to generate).
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateCoupons, type AnswerKey } from '../../src/gen/generate-coupons.js'

export function benchDataDir (scale: number): string {
  return join('data', scale === 1 ? 'scale-1' : `bench-${scale}`)
}

/** The folder of this scale's files and their answer key, generating them when missing. */
export async function benchData (scale: number, seed = 1): Promise<{ dir: string, key: AnswerKey }> {
  const dir = benchDataDir(scale)
  const keyPath = join(dir, 'answers.json')
  if (!existsSync(keyPath)) {
    console.log(`generating scale ${scale} files into ${dir} (once)...`)
    await generateCoupons({ outDir: dir, scale, seed })
  }
  return { dir, key: JSON.parse(await readFile(keyPath, 'utf8')) as AnswerKey }
}
