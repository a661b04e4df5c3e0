import { createReadStream } from 'node:fs'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createGunzip } from 'node:zlib'
import t from 'tap'
import { FILE_SHAPES } from '../../src/gen/coupon-files.js'
import { generateCoupons, type AnswerKey } from '../../src/gen/generate-coupons.js'
import { REAL_VALID } from '../helpers/real-codes.js'

/** Reads a generated file back line by line (small scales only: keeps a Map of every line). */
async function readBack (path: string): Promise<{ lines: string[], counts: Map<string, number> }> {
  const lines: string[] = []
  let rest = ''
  for await (const chunk of createReadStream(path).pipe(createGunzip())) {
    const parts = (rest + chunk.toString('latin1')).split('\n')
    rest = parts.pop() ?? ''
    lines.push(...parts)
  }
  if (rest !== '') lines.push(rest)
  const counts = new Map<string, number>()
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1)
  return { lines, counts }
}

t.test('generated files have the shape of the real ones and match their answer key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coupons-gen-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const key = await generateCoupons({ outDir: dir, scale: 0.001, seed: 7 })
  const onDisk = JSON.parse(await readFile(join(dir, 'answers.json'), 'utf8')) as AnswerKey
  t.same(onDisk, key, 'answers.json holds the returned key')

  const files = new Map<string, Awaited<ReturnType<typeof readBack>>>()
  for (const shape of FILE_SHAPES) files.set(shape.name, await readBack(join(dir, shape.name)))

  for (const shape of FILE_SHAPES) {
    const { lines } = files.get(shape.name)!
    t.equal(lines.length, Math.round(shape.realLines * 0.001), `${shape.name} has the scaled line count`)
    t.equal(lines.length, key.files[shape.name].lines, `${shape.name} line count is in the key`)
    const planted = new Set(Object.keys(key.planted))
    const odd = lines.filter((line) => line.length !== shape.codeLength && !planted.has(line))
    t.same(odd, [], `every unplanted line of ${shape.name} has ${shape.codeLength} characters`)
    t.ok(lines.every((line) => /^[A-Z0-9]+$/.test(line)), `${shape.name} holds uppercase alphanumerics only`)
  }

  const tail2 = files.get('couponbase2.gz')!.lines.slice(-8)
  const tail3 = files.get('couponbase3.gz')!.lines.slice(-8)
  t.ok(tail2.every((line) => line.length === 8), 'file 2 ends with 8 lines of 8 characters')
  t.ok(tail3.every((line) => line.length === 8), 'file 3 ends with 8 lines of 8 characters')
  t.same([...tail3].sort(), REAL_VALID, 'file 3 ends with the 8 real valid codes')
  t.same([...tail2].sort(), [...REAL_VALID.filter((c) => c !== 'HAPPYHRS'), 'MOODYHRS'].sort(), 'file 2 ends with 7 valid codes and MOODYHRS')
  t.same(files.get('couponbase1.gz')!.lines.slice(-9).sort(), [...REAL_VALID, 'SUPER100'].sort(), 'file 1 ends with the real codes and SUPER100')

  for (const [code, claimed] of Object.entries(key.planted)) {
    const holding = FILE_SHAPES.map((s) => s.name).filter((name) => files.get(name)!.counts.has(code))
    t.same(holding, claimed, `${code} is in exactly the files the key claims`)
  }

  t.same(key.valid.filter((code) => REAL_VALID.includes(code)), REAL_VALID, 'the real valid codes are valid')
  t.ok(key.decoys.includes('SUPER100') && key.decoys.includes('MOODYHRS') && key.decoys.includes('HAPPYHOURS'), 'the decoys are listed')
  t.ok(key.valid.some((code) => key.planted[code].length === 2) && key.valid.some((code) => key.planted[code].length === 3), 'valid codes in two and in three files')
  t.equal(files.get('couponbase1.gz')!.counts.get('REPEAT50'), 50, 'a decoy repeated 50 times in one file')
  t.ok(key.decoys.includes('REPEAT50'), 'and it is still a decoy: files are counted, not occurrences')

  // The key's verdicts hold for the whole files, not only for the planted lines.
  const inFiles = new Map<string, number>()
  for (const { counts } of files.values()) for (const code of counts.keys()) inFiles.set(code, (inFiles.get(code) ?? 0) + 1)
  const validInFiles = [...inFiles].filter(([, n]) => n >= 2).map(([code]) => code).sort()
  t.same(validInFiles, key.valid, 'the codes in two or more files are exactly the key\'s valid codes')
})

t.test('the same seed gives the same files and another seed other files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coupons-gen-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const a = await generateCoupons({ outDir: join(dir, 'a'), scale: 0.0001, seed: 3 })
  const b = await generateCoupons({ outDir: join(dir, 'b'), scale: 0.0001, seed: 3 })
  const c = await generateCoupons({ outDir: join(dir, 'c'), scale: 0.0001, seed: 4 })
  t.same(a, b)
  const fileA = await readFile(join(dir, 'a', 'couponbase1.gz'))
  t.ok(fileA.equals(await readFile(join(dir, 'b', 'couponbase1.gz'))), 'identical bytes')
  t.notOk(fileA.equals(await readFile(join(dir, 'c', 'couponbase1.gz'))), 'another seed differs')
  t.notSame(a.valid, c.valid)
})

t.test('no partial file is left behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'coupons-gen-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await generateCoupons({ outDir: dir, scale: 0.0001, seed: 1 })
  await t.rejects(stat(join(dir, 'couponbase1.gz.partial')), { code: 'ENOENT' })
})

t.test('bad options are refused', async (t) => {
  await t.rejects(generateCoupons({ outDir: tmpdir(), scale: 0, seed: 1 }), /--scale/)
  await t.rejects(generateCoupons({ outDir: tmpdir(), scale: 0.1, seed: 1.5 }), /--seed/)
})
