// `coupons ingest <file…>`: produce files straight to Kafka, without the queue (for operators who
// prefer cron). Publishes one RunRecord (source 'cli') for the files, then produces them in
// parallel (gunzip runs on libuv's thread pool), with a progress bar per file on a TTY. Ctrl-C
// aborts: records already sent stay without a manifest, so nothing is published.
import { constants } from 'node:os'
import { basename, resolve } from 'node:path'
import closeWithGrace from 'close-with-grace'
import { checkRunFiles, loadConfig, type Config } from '../shared/config.js'
import { CouponsError, isCouponsError } from '../shared/errors.js'
import { createKafka } from '../shared/kafka.js'
import { createLogger } from '../shared/logger.js'
import { redisKeys } from '../shared/redis-keys.js'
import { progressBars } from '../shared/progress-bar.js'
import { newRunId } from '../shared/segments.js'
import { createLockRedis, DEFAULT_LOCK_TIMING, untilReady, withFileLock } from './file-lock.js'
import { checkRunPartitions, isFullRun, livePartitions } from './run-partitions.js'
import { produceFile } from './produce-file.js'
import { publishRunRecord } from './run-record.js'

const MB = 1024 * 1024

/** An argument is a configured file name, or a path to a file whose name is configured. */
export function resolveIngestArgs (config: Pick<Config, 'couponFiles'>, args: string[]): Array<{ file: string, path?: string }> {
  if (args.length === 0) throw new CouponsError('INGEST_NO_FILES', `usage: coupons ingest <file…> (configured files: ${config.couponFiles.join(', ')})`)
  const targets = args.map((arg) => {
    const file = basename(arg)
    return arg === file ? { file } : { file, path: resolve(arg) }
  })
  checkRunFiles(config, targets.map((t) => t.file))
  return targets
}

/** The conventional exit status of a process ended by a signal: 128 + its number (130 for SIGINT). */
function signalExitCode (signal: string): number {
  const number = (constants.signals as Record<string, number | undefined>)[signal]
  return number === undefined ? 1 : 128 + number
}

export async function ingestCommand (argv: string[]): Promise<void> {
  const config = loadConfig()
  const targets = resolveIngestArgs(config, argv)
  const logger = createLogger(config.logLevel, 'ingest')
  const kafka = createKafka(config, logger, 'coupons-ingest-cli')
  // The per-file lock the workers take too: a cron ingest never produces a file at the same time as
  // a queued job (the aggregator's clean-up could otherwise delete the other production's start).
  // On the lock's own fail-fast connection: cut off from Redis, a production stops before its lock
  // could expire instead of hanging.
  const redis = createLockRedis(config, logger)
  const keys = redisKeys(config.redisPrefix)
  const files = targets.map((t) => t.file)
  const abort = new AbortController()
  let work: Promise<void> = Promise.resolve()
  // close-with-grace exits 0 once this handler returns: wait for the productions to abort, settle
  // their sends and disconnect, then exit with the signal's status (1 after a crash).
  const grace = closeWithGrace({ delay: 10_000, logger }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, 'ingest crashed')
    else if (signal !== undefined) logger.warn({ signal }, 'ingest interrupted: nothing of the unfinished files is published')
    abort.abort()
    await work.catch(() => {})
    process.exit(signal === undefined ? 1 : signalExitCode(signal))
  })
  work = (async () => {
    const bars = progressBars('MB')
    const runId = newRunId()
    // Refused before anything is published: a partial run cannot change the partition count.
    if (!isFullRun(config, files)) {
      await untilReady(redis, DEFAULT_LOCK_TIMING.callTimeoutMs)
      checkRunPartitions(config, files, await livePartitions(redis, config.redisPrefix))
    }
    await publishRunRecord(kafka, config, { type: 'run', runId, files, requestedAt: new Date().toISOString(), source: 'cli' })
    logger.info({ runId, files }, 'run published')
    const onWait = (file: string) => () => { logger.info({ file }, 'another production of this file is running; waiting for it') }
    const results = await Promise.allSettled(targets.map(async ({ file, path }) => await withFileLock(redis, keys.ingestLock(file), { signal: abort.signal, onWait: onWait(file) }, async (signal, lock) => await produceFile({
      config,
      kafka,
      logger,
      file,
      path,
      runId,
      signal,
      fence: lock.assertHeld,
      onProgress: (p) => { bars.update(file, Math.round(p.bytesRead / MB), Math.max(1, Math.round(p.bytesTotal / MB))) }
    }))))
    bars.stop()
    const failed: Error[] = []
    for (const result of results) {
      if (result.status === 'rejected') {
        failed.push(result.reason as Error)
      } else {
        const { file, segmentId, codes, lines } = result.value
        logger.info({ runId, file, segmentId, codes, lines }, 'file ingested')
      }
    }
    if (failed.length === 1) throw failed[0]
    if (failed.length > 1) throw new AggregateError(failed, failed.map((err) => `${isCouponsError(err) ? err.code : 'ERROR'}: ${err.message}`).join('; '))
  })()
  try {
    await work
  } finally {
    grace.uninstall()
    redis.disconnect()
  }
}
