// Polling for tests, benchmarks and the launcher: wait until something is true, or say what never was.

/**
 * Polls `check` until it returns something other than undefined, null or false, or fails after
 * `timeoutMs` naming what it waited for. A check that throws is tried again (a service still
 * starting); the last error is in the timeout's message.
 */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 60_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== null && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? ` (last error: ${lastError.message})` : ''}`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
