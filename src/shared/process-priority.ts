// The pipeline's processes (ingest sandboxes, aggregator) step back for the api: on a host whose
// cores they share, checkout's requests must not queue behind a run (issue 15). A higher nice value
// only matters when the cores are contended; an idle core is still theirs.
import { readdirSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import type { Logger } from './logger.js'

/**
 * Gives this process the nice value `nice` (PIPELINE_NICE), never a higher priority than it has.
 * Linux keeps a nice value per thread: the main thread's is set first, so threads started later
 * (libuv's pool, where zlib inflates) inherit it, then every thread already running gets it too.
 */
export function lowerPriority (nice: number, logger: Logger): void {
  if (nice === 0 || getPriority() >= nice) return
  try {
    setPriority(nice)
    let threads: string[] = []
    try {
      threads = readdirSync('/proc/self/task')
    } catch {
      // Not Linux: the process-wide call above is all there is.
    }
    for (const tid of threads) if (getPriority(Number(tid)) < nice) setPriority(Number(tid), nice)
    logger.debug({ nice }, 'process priority lowered for the api')
  } catch (err) {
    logger.warn({ err, nice }, 'could not lower the process priority (PIPELINE_NICE); running at the normal priority')
  }
}
