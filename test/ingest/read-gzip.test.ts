// openGzip and the GzipFile it returns: the decompressed bytes in bounded chunks, the compressed
// size, progress and sha256, and a CouponsError with a precise code for every kind of bad file.
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { Sfc32 } from '../../src/gen/random.js'
import { MAX_LINE_BYTES, openGzip, type GzipFile } from '../../src/ingest/read-gzip.js'

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'read-gzip-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function writeTemp (t: Test, name: string, content: Buffer): Promise<string> {
  const path = join(await tempDir(t), name)
  await writeFile(path, content)
  return path
}

async function readAll (gzip: GzipFile): Promise<{ bytes: Buffer, chunks: number, largest: number }> {
  const parts: Buffer[] = []
  let largest = 0
  for await (const chunk of gzip) {
    parts.push(Buffer.from(chunk))
    largest = Math.max(largest, chunk.length)
  }
  return { bytes: Buffer.concat(parts), chunks: parts.length, largest }
}

/** Seeded lines of 8-char codes: the same bytes on every run. */
function codeLines (count: number, seed: number): Buffer {
  const rng = new Sfc32(seed)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
  const lines: string[] = []
  for (let i = 0; i < count; i++) {
    let code = ''
    for (let j = 0; j < 8; j++) code += alphabet[rng.below(alphabet.length)]
    lines.push(code)
  }
  return Buffer.from(lines.join('\n') + '\n')
}

/** Seeded bytes that gzip cannot compress: the compressed file is as large as the data. */
function noise (bytes: number, seed: number): Buffer {
  const rng = new Sfc32(seed)
  const buffer = Buffer.alloc(bytes)
  for (let i = 0; i < bytes; i += 4) buffer.writeUInt32LE(rng.next(), i)
  return buffer
}

t.test('yields the decompressed bytes in chunks of at most 64 KiB, with the size, bytes read and sha256 of the file', async (t) => {
  const plain = codeLines(100_000, 1)
  const compressed = gzipSync(plain)
  const path = await writeTemp(t, 'couponbase1.gz', compressed)

  const gzip = await openGzip('couponbase1.gz', path)
  t.equal(gzip.bytesTotal, compressed.length, 'the compressed size is known before reading')
  t.equal(gzip.bytesRead, 0)
  const { bytes, largest } = await readAll(gzip)

  t.equal(bytes.compare(plain), 0, 'the decompressed bytes, in order')
  t.equal(largest, 64 * 1024, 'no chunk is larger than 64 KiB')
  t.equal(gzip.bytesRead, compressed.length, 'every compressed byte was read')
  t.equal(gzip.sha256(), createHash('sha256').update(compressed).digest('hex'), 'the sha256 of the compressed file')
})

t.test('reads the file only as fast as the loop takes the chunks', async (t) => {
  const compressed = gzipSync(noise(16 * 1024 * 1024, 2), { level: 1 })
  const path = await writeTemp(t, 'noise.gz', compressed)
  const gzip = await openGzip('noise.gz', path)
  const chunks = gzip[Symbol.asyncIterator]()
  const first = await chunks.next()
  t.equal(first.value?.length, 64 * 1024)
  // Time enough for an eager reader to read the whole file.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok(gzip.bytesRead < compressed.length / 4, `${gzip.bytesRead} of ${compressed.length} bytes read after the first chunk`)
  await chunks.return(undefined)
})

t.test('a gzip of nothing yields no chunk', async (t) => {
  const path = await writeTemp(t, 'empty.gz', gzipSync(Buffer.alloc(0)))
  const { bytes, chunks } = await readAll(await openGzip('empty.gz', path))
  t.equal(bytes.length, 0)
  t.equal(chunks, 0)
})

t.test('rejects a missing file, a folder and an empty file when opening, before reading anything', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'folder.gz'))
  await writeFile(join(dir, 'zero.gz'), Buffer.alloc(0))
  await t.rejects(openGzip('missing.gz', join(dir, 'missing.gz')), { name: 'CouponsError', code: 'INGEST_FILE_MISSING', message: /^missing\.gz: no such file at / })
  await t.rejects(openGzip('folder.gz', join(dir, 'folder.gz')), { name: 'CouponsError', code: 'INGEST_FILE_UNREADABLE', message: /^folder\.gz: .* is not a regular file$/ })
  await t.rejects(openGzip('zero.gz', join(dir, 'zero.gz')), { name: 'CouponsError', code: 'INGEST_TRUNCATED_GZIP', message: /^zero\.gz: 0 bytes, not even a gzip header/ })
})

t.test('rejects a truncated gzip with INGEST_TRUNCATED_GZIP', async (t) => {
  const compressed = gzipSync(codeLines(50_000, 3))
  const path = await writeTemp(t, 'truncated.gz', compressed.subarray(0, Math.floor(compressed.length * 0.6)))
  const gzip = await openGzip('truncated.gz', path)
  await t.rejects(readAll(gzip), { name: 'CouponsError', code: 'INGEST_TRUNCATED_GZIP', message: /^truncated\.gz: truncated gzip \(unexpected end of file\)/ })
})

t.test('rejects a gzip cut just before its trailer with INGEST_TRUNCATED_GZIP', async (t) => {
  const compressed = gzipSync(codeLines(1000, 4))
  // The 8-byte trailer holds the CRC and the size: without it the data is all there but unchecked.
  const path = await writeTemp(t, 'notrailer.gz', compressed.subarray(0, compressed.length - 8))
  await t.rejects(readAll(await openGzip('notrailer.gz', path)), { name: 'CouponsError', code: 'INGEST_TRUNCATED_GZIP', message: /^notrailer\.gz: truncated gzip/ })
})

t.test('rejects a corrupt gzip with INGEST_CORRUPT_GZIP', async (t) => {
  const corrupt = Buffer.from(gzipSync(codeLines(50_000, 5)))
  corrupt.fill(0x55, 2000, 2100)
  const path = await writeTemp(t, 'corrupt.gz', corrupt)
  await t.rejects(readAll(await openGzip('corrupt.gz', path)), { name: 'CouponsError', code: 'INGEST_CORRUPT_GZIP', message: /^corrupt\.gz: corrupt gzip \(/ })
})

t.test('rejects a file that is not gzip at all with INGEST_CORRUPT_GZIP, saying so', async (t) => {
  const path = await writeTemp(t, 'plain.gz', Buffer.from('AAAAAAAA\nBBBBBBBB\n'))
  await t.rejects(readAll(await openGzip('plain.gz', path)), { name: 'CouponsError', code: 'INGEST_CORRUPT_GZIP', message: /^plain\.gz: not a gzip file \(no gzip header; / })
})

t.test('accepts a line of MAX_LINE_BYTES bytes and rejects one a byte longer with INGEST_LINE_TOO_LONG', async (t) => {
  const dir = await tempDir(t)
  const longest = Buffer.concat([Buffer.from('AAAAAAAA\n'), Buffer.alloc(MAX_LINE_BYTES, 'B'), Buffer.from('\nCCCCCCCC\n')])
  await writeFile(join(dir, 'longest.gz'), gzipSync(longest))
  t.equal((await readAll(await openGzip('longest.gz', join(dir, 'longest.gz')))).bytes.length, longest.length)

  const tooLong = Buffer.concat([Buffer.from('AAAAAAAA\n'), Buffer.alloc(MAX_LINE_BYTES + 1, 'B'), Buffer.from('\nCCCCCCCC\n')])
  await writeFile(join(dir, 'toolong.gz'), gzipSync(tooLong))
  await t.rejects(readAll(await openGzip('toolong.gz', join(dir, 'toolong.gz'))), { name: 'CouponsError', code: 'INGEST_LINE_TOO_LONG', message: new RegExp(`^toolong\\.gz: a line is longer than ${MAX_LINE_BYTES} bytes without a line end`) })
})

t.test('stops with INGEST_ABORTED when its signal aborts mid-file', async (t) => {
  const path = await writeTemp(t, 'noise.gz', gzipSync(noise(8 * 1024 * 1024, 6), { level: 1 }))
  const abort = new AbortController()
  const gzip = await openGzip('noise.gz', path, abort.signal)
  let chunks = 0
  let decompressed = 0
  const reading = (async () => {
    for await (const chunk of gzip) {
      decompressed += chunk.length
      if (++chunks === 2) abort.abort()
    }
  })()
  await t.rejects(reading, { name: 'CouponsError', code: 'INGEST_ABORTED', message: /^noise\.gz: ingest aborted$/ })
  t.ok(gzip.bytesRead < gzip.bytesTotal, `${gzip.bytesRead} of ${gzip.bytesTotal} compressed bytes read: the rest of the file was not`)
  t.ok(decompressed < 8 * 1024 * 1024, `${decompressed} bytes yielded, not the whole file`)
})

t.test('a file written in place while it is read fails with INGEST_FILE_CHANGED, not as a corrupt or truncated gzip', async (t) => {
  const path = await writeTemp(t, 'couponbase1.gz', gzipSync(codeLines(1_000_000, 7), { level: 1 }))
  const gzip = await openGzip('couponbase1.gz', path)
  let readAtWrite = -1
  const reading = (async () => {
    for await (const chunk of gzip) {
      if (readAtWrite !== -1 || chunk.length === 0) continue
      readAtWrite = gzip.bytesRead
      await writeFile(path, gzipSync(codeLines(1000, 8)))
    }
  })()
  await t.rejects(reading, { name: 'CouponsError', code: 'INGEST_FILE_CHANGED', message: /^couponbase1\.gz: the file changed while it was read \(.*size \d+ -> \d+.*rename them into place$/ })
  t.ok(readAtWrite < gzip.bytesTotal, `overwritten after ${readAtWrite} of ${gzip.bytesTotal} bytes`)
})

t.test('a file rewritten with the same bytes while it is read fails with INGEST_FILE_CHANGED too: its mtime moved', async (t) => {
  const compressed = gzipSync(codeLines(1_000_000, 9), { level: 1 })
  const path = await writeTemp(t, 'couponbase2.gz', compressed)
  const gzip = await openGzip('couponbase2.gz', path)
  let written = false
  const reading = (async () => {
    for await (const chunk of gzip) {
      if (written || chunk.length === 0) continue
      written = true
      await new Promise((resolve) => setTimeout(resolve, 20))
      await writeFile(path, compressed)
    }
  })()
  await t.rejects(reading, { name: 'CouponsError', code: 'INGEST_FILE_CHANGED', message: /mtimeMs/ })
})

t.test('a file replaced by rename while it is read is read whole from the file that was opened, whose identity it reports', async (t) => {
  const plain = codeLines(1_000_000, 10)
  const path = await writeTemp(t, 'couponbase3.gz', gzipSync(plain, { level: 1 }))
  const before = await stat(path)
  const gzip = await openGzip('couponbase3.gz', path)
  t.same(gzip.identity, { dev: before.dev, ino: before.ino, size: before.size, mtimeMs: before.mtimeMs }, 'the identity of the opened file')
  const parts: Buffer[] = []
  for await (const chunk of gzip) {
    if (parts.length === 0) {
      await writeFile(`${path}.new`, gzipSync('SUPER100\n'))
      await rename(`${path}.new`, path)
    }
    parts.push(Buffer.from(chunk))
  }
  t.equal(Buffer.concat(parts).compare(plain), 0, 'every byte of the version that was opened')
  t.ok(gzip.replacedDuringRead, 'and it says the path names another file now')
  t.not((await stat(path)).ino, gzip.identity.ino)
})
