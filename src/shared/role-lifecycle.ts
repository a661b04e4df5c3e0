// How a long-running role process (aggregator, flash-sale consumer, standalone worker) starts and
// stops: a failed start closes what it opened and rethrows (the CLI then exits non-zero), and once
// running, close-with-grace closes it on a signal or an unexpected error.
import closeWithGrace from 'close-with-grace'
import type { Logger } from './logger.js'

export interface RoleService {
  start?: () => Promise<void>
  close: () => Promise<void>
}

/**
 * Starts `service`, then keeps it until a signal or an unexpected error closes it (within
 * `graceMs`). Returns a way to remove the signal handlers again (for tests).
 */
export async function runRole (name: string, logger: Logger, service: RoleService, graceMs = 15_000): Promise<{ uninstall: () => void }> {
  try {
    await service.start?.()
  } catch (err) {
    // The open clients would keep a failed process alive.
    await service.close()
    throw err
  }
  // Installed once running: close-with-grace exits 0 on a clean close, which must not hide a failed start.
  return closeWithGrace({ delay: graceMs, logger: { error: (message: unknown) => { logger.error(message) } } }, async ({ err, signal }) => {
    if (err !== undefined) logger.error({ err }, `${name} stopping after an unexpected error`)
    else logger.info({ signal }, `${name} stopping`)
    await service.close()
  })
}
