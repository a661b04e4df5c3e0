// Starts one role of the system (`coupons api`, `coupons aggregator`, …) as a child process, the way
// a user or an orchestrator would, and stops it cleanly. Used by `npm start`, the end-to-end test
// and bench:e2e, so that all three exercise the real processes.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { NODE_FLAGS } from '../../src/shared/node-flags.js'

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

export interface RoleProcess {
  role: string
  child: ChildProcess
  /** resolves with the exit code (or the signal's name) when the process has ended */
  exited: Promise<number | string>
  /** SIGTERM, then SIGKILL after `graceMs`; idempotent */
  stop: (graceMs?: number) => Promise<number | string>
  /** SIGKILL at once (crash tests) */
  kill: () => Promise<number | string>
}

/**
 * `cli`: a compiled entry point to run instead of the TypeScript sources through tsx, such as
 * `dist/cli.js` from `npm run build` (what the Docker image runs).
 */
export function startRole (role: string, args: string[], env: NodeJS.ProcessEnv, stdio: StdioOptions = 'inherit', cli?: string): RoleProcess {
  const child = spawn(process.execPath, [...NODE_FLAGS, ...(cli === undefined ? ['--import', 'tsx', CLI] : [cli]), role, ...args], { env, stdio })
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string)
  let stopping: Promise<number | string> | undefined
  return {
    role,
    child,
    exited,
    stop (graceMs = 15_000) {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return await exited
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
        try { return await exited } finally { clearTimeout(timer) }
      })()
      return stopping
    },
    async kill () {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      return await exited
    }
  }
}
