// Streams one gzipped coupon file in constant memory: openGzip checks the file, then iterating
// the GzipFile yields its decompressed chunks one at a time, and the next one is decompressed only
// when the loop asks for it (backpressure all the way to the disk). The compressed bytes are hashed
// and counted as they are read (progress and the manifest's sha256). Every way a file can be bad
// ends in a CouponsError naming the file and the cause.
//
// The file is read through the descriptor opened first, so a file replaced by rename meanwhile is
// read consistently from its old inode (and the manifest says which one: `identity`). A file
// written in place while it is read is another matter: its size or mtime differ between the open
// and the end of the read, and the read fails with INGEST_FILE_CHANGED, whatever error the mixed
// bytes caused first.
import { createHash } from 'node:crypto'
import { createReadStream, type Stats } from 'node:fs'
import { open, stat, type FileHandle } from 'node:fs/promises'
import { pipeline } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import type { FileIdentity } from '../shared/segments.js'

/** A line longer than this is not a coupon file (e.g. a binary file without newlines). */
export const MAX_LINE_BYTES = 1 << 20
/** Decompressed chunk size: never above MAX_LINE_BYTES, which the line guard relies on. */
const CHUNK_BYTES = 64 * 1024
const READ_BYTES = 256 * 1024
const LF = 0x0a

/** Opens the file and checks that it is a regular, non-empty file (before anything else is done for it). */
export async function openGzip (file: string, path: string, signal?: AbortSignal): Promise<GzipFile> {
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    throw readError(file, path, err, null)
  }
  try {
    return new GzipFile(file, path, handle, identityOf(checkedStats(file, path, await handle.stat())), signal)
  } catch (err) {
    await handle.close().catch(() => {})
    throw readError(file, path, err, null)
  }
}

export class GzipFile implements AsyncIterable<Buffer> {
  /** the file's name, for messages */
  readonly file: string
  readonly path: string
  /** the opened file as it was at the open; the read fails if it is not the same at the end */
  readonly identity: FileIdentity
  /** compressed bytes */
  readonly bytesTotal: number
  /** compressed bytes read so far */
  bytesRead = 0
  /** set at the end of a read when the path names another file by then (replaced by rename: fine, the opened one was read) */
  replacedDuringRead = false
  readonly #handle: FileHandle
  readonly #signal: AbortSignal | undefined
  readonly #hash = createHash('sha256')
  #sha256: string | null = null
  #firstBytes: Buffer | null = null
  #closed: Promise<void> | null = null

  constructor (file: string, path: string, handle: FileHandle, identity: FileIdentity, signal?: AbortSignal) {
    this.file = file
    this.path = path
    this.#handle = handle
    this.identity = identity
    this.bytesTotal = identity.size
    this.#signal = signal
  }

  /** Closes the file; reading to the end or leaving the loop does it too. Idempotent. */
  close (): Promise<void> {
    this.#closed ??= this.#handle.close().catch(() => {})
    return this.#closed
  }

  /** The sha256 of the compressed file, once every chunk has been read. */
  sha256 (): string {
    this.#sha256 ??= this.#hash.digest('hex')
    return this.#sha256
  }

  /** The decompressed chunks, in order; read them once. Leaving the loop early closes the file. */
  async * [Symbol.asyncIterator] (): AsyncGenerator<Buffer> {
    const guard = new LineGuard(this.file)
    // pipeline destroys every stage with the first error, so the loop below throws it; the
    // callback only keeps that error from being reported a second time.
    const gunzip = pipeline(
      createReadStream(this.path, { fd: this.#handle, autoClose: false, start: 0, highWaterMark: READ_BYTES, signal: this.#signal }),
      (source: AsyncIterable<Buffer>) => this.#counted(source),
      createGunzip({ chunkSize: CHUNK_BYTES }),
      () => {}
    )
    try {
      for await (const chunk of gunzip as AsyncIterable<Buffer>) {
        guard.check(chunk)
        yield chunk
      }
      const changed = await this.#changes()
      if (changed !== null) throw this.#changedError(changed, null)
    } catch (err) {
      if (isCouponsError(err, 'INGEST_FILE_CHANGED')) throw err
      // Bytes of two versions make a "corrupt" or "truncated" gzip: say what really happened.
      const changed = await this.#changes().catch(() => null)
      throw changed === null ? readError(this.file, this.path, err, this.#firstBytes) : this.#changedError(changed, err)
    } finally {
      await this.close()
    }
  }

  /** What differs between the open and now, or null when the opened file is unchanged. */
  async #changes (): Promise<string | null> {
    const now = identityOf(await this.#handle.stat())
    const differences = (Object.keys(now) as Array<keyof FileIdentity>)
      .filter((field) => now[field] !== this.identity[field])
      .map((field) => `${field} ${this.identity[field]} -> ${now[field]}`)
    if (differences.length === 0 && this.bytesRead !== this.identity.size) differences.push(`${this.bytesRead} bytes read of ${this.identity.size}`)
    if (differences.length > 0) return differences.join(', ')
    const atPath = await stat(this.path).catch(() => null)
    this.replacedDuringRead = atPath === null || atPath.ino !== this.identity.ino || atPath.dev !== this.identity.dev
    return null
  }

  #changedError (changes: string, cause: unknown): CouponsError {
    const after = cause === null ? '' : ` (reading it failed with: ${(cause as Error).message})`
    return new CouponsError('INGEST_FILE_CHANGED',
      `${this.file}: the file changed while it was read (${changes})${after}; write coupon files aside and rename them into place`, { cause })
  }

  async * #counted (compressed: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of compressed) {
      this.#firstBytes ??= chunk.subarray(0, 2)
      this.#hash.update(chunk)
      this.bytesRead += chunk.length
      yield chunk
    }
  }
}

/**
 * Fails when the file is not a regular file or is empty. A 0-byte file is not a gzip stream (an
 * empty gzip is 20 bytes): it is a copy still in progress or a failed download, never an empty
 * segment.
 */
function checkedStats (file: string, path: string, stats: Stats): Stats {
  if (!stats.isFile()) throw new CouponsError('INGEST_FILE_UNREADABLE', `${file}: ${path} is not a regular file`)
  if (stats.size === 0) throw new CouponsError('INGEST_TRUNCATED_GZIP', `${file}: 0 bytes, not even a gzip header (a copy still in progress?)`)
  return stats
}

function identityOf (stats: Stats): FileIdentity {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs }
}

function readError (file: string, path: string, err: unknown, firstBytes: Buffer | null): Error {
  if (isCouponsError(err)) return err
  const e = err as NodeJS.ErrnoException
  if (e.name === 'AbortError') return new CouponsError('INGEST_ABORTED', `${file}: ingest aborted`, { cause: err, retriable: true })
  switch (e.code) {
    case 'ENOENT':
      return new CouponsError('INGEST_FILE_MISSING', `${file}: no such file at ${path}`, { cause: err })
    case 'EACCES':
    case 'EPERM':
    case 'EISDIR':
      return new CouponsError('INGEST_FILE_UNREADABLE', `${file}: cannot read ${path} (${e.code})`, { cause: err })
    case 'Z_BUF_ERROR':
      // zlib's "unexpected end of file": the stream stops before the gzip trailer.
      return new CouponsError('INGEST_TRUNCATED_GZIP', `${file}: truncated gzip (unexpected end of file): the file was cut short or is still being copied`, { cause: err })
    case 'Z_DATA_ERROR':
    case 'Z_STREAM_ERROR':
    case 'Z_NEED_DICT': {
      const gzipMagic = firstBytes !== null && firstBytes.length === 2 && firstBytes[0] === 0x1f && firstBytes[1] === 0x8b
      return new CouponsError('INGEST_CORRUPT_GZIP', gzipMagic
        ? `${file}: corrupt gzip (${e.message})`
        : `${file}: not a gzip file (no gzip header; ${e.message})`, { cause: err })
    }
  }
  return new CouponsError('INGEST_READ_FAILED', `${file}: reading ${path} failed: ${e.message}`, { cause: err, retriable: true })
}

/**
 * Fails on a line longer than MAX_LINE_BYTES, so that a file of one enormous line is rejected
 * instead of being scanned for nothing. Only the two LFs at the ends of a chunk are looked at: a
 * line inside one chunk is shorter than the chunk, which is never longer than MAX_LINE_BYTES
 * (CHUNK_BYTES).
 */
class LineGuard {
  #file: string
  /** bytes since the last LF */
  #open = 0

  constructor (file: string) { this.#file = file }

  check (chunk: Buffer): void {
    const first = chunk.indexOf(LF)
    if (first === -1) {
      this.#open += chunk.length
      if (this.#open > MAX_LINE_BYTES) this.#fail()
      return
    }
    if (this.#open + first > MAX_LINE_BYTES) this.#fail()
    this.#open = chunk.length - 1 - chunk.lastIndexOf(LF)
  }

  #fail (): never {
    throw new CouponsError('INGEST_LINE_TOO_LONG',
      `${this.#file}: a line is longer than ${MAX_LINE_BYTES} bytes without a line end: not a coupon file of one code per line`)
  }
}
