// `coupons ingest <file…>`: produce files straight to Kafka, without the queue (for operators who
// prefer cron). Publishes one RunRecord (source 'cli') for the files, then produces them in
// parallel (gunzip runs on libuv's thread pool), with a progress bar per file on a TTY. Ctrl-C
// aborts: records already sent stay without a manifest, so nothing is published.
import { basename, resolve } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { loadConfig, type Config } from '../shared/config.js'
import { CouponsError } from '../shared/errors.js'
import { createKafka } from '../shared/kafka.js'
import { createLogger } from '../shared/logger.js'
import { progressBars } from '../shared/progress-bar.js'
import { newRunId } from '../shared/segments.js'
import { produceFile } from './produce-file.js'
import { publishRunRecord } from './run-record.js'

const MB = 1024 * 1024

/** An argument is a configured file name, or a path to a file whose name is configured. */
export function resolveIngestArgs (config: Pick<Config, 'couponFiles'>, args: string[]): Array<{ file: string, path?: string }> {
  if (args.length === 0) throw new CouponsError('INGEST_NO_FILES', `usage: coupons ingest <file…> (configured files: ${config.couponFiles.join(', ')})`)
  const targets = args.map((arg) => {
    const file = basename(arg)
    if (!config.couponFiles.includes(file)) throw new CouponsError('INGEST_UNKNOWN_FILE', `${arg}: ${file} is not in COUPON_FILES (${config.couponFiles.join(', ')})`)
    return arg === file ? { file } : { file, path: resolve(arg) }
  })
  if (new Set(targets.map((t) => t.file)).size !== targets.length) throw new CouponsError('INGEST_DUPLICATE_FILE', 'a file is listed twice')
  return targets
}

export async function ingestCommand (argv: string[]): Promise<void> {
  const config = loadConfig()
  const targets = resolveIngestArgs(config, argv)
  const logger = createLogger(config.logLevel, 'ingest')
  const kafka = createKafka(config, logger, 'coupons-ingest-cli')
  const abort = new AbortController()
  const grace = closeWithGrace({ delay: 10_000, logger }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, 'ingest crashed')
    else if (signal !== undefined) logger.warn({ signal }, 'ingest interrupted: nothing of the unfinished files is published')
    abort.abort()
  })
  const bars = progressBars('MB')
  try {
    const runId = newRunId()
    await publishRunRecord(kafka, config, { type: 'run', runId, files: targets.map((t) => t.file), requestedAt: new Date().toISOString(), source: 'cli' })
    logger.info({ runId, files: targets.map((t) => t.file) }, 'run published')
    const results = await Promise.allSettled(targets.map(({ file, path }) => produceFile({
      config,
      kafka,
      logger,
      file,
      path,
      runId,
      signal: abort.signal,
      onProgress: (p) => { bars.update(file, Math.round(p.bytesRead / MB), Math.max(1, Math.round(p.bytesTotal / MB))) }
    })))
    bars.stop()
    const failed = results.flatMap((result) => result.status === 'rejected' ? [result.reason as Error] : [])
    for (const result of results) {
      if (result.status === 'fulfilled') {
        const { file, segmentId, codes, lines } = result.value
        logger.info({ runId, file, segmentId, codes, lines }, 'file ingested')
      }
    }
    if (failed.length > 0) throw new Error(failed.map((err) => `${(err as CouponsError).code ?? 'ERROR'}: ${err.message}`).join('; '))
  } finally {
    bars.stop()
    grace.uninstall()
  }
}
