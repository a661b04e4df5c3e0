// A child process of ours (a CLI role or a test entry) run with tsx, whose JSON log lines a test can
// wait for; SIGKILLed at teardown if still running. Used for the aggregator's and the flash-sale
// consumer's kill tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { Test } from 'tap'

export interface LoggedChild {
  child: ChildProcess
  exited: Promise<number | null>
  /** resolves with the first JSON log line whose msg includes the text */
  waitForLog: (text: string, timeoutMs?: number) => Promise<Record<string, unknown>>
  /** every JSON log line so far whose msg includes the text, oldest first */
  logs: (text: string) => Array<Record<string, unknown>>
  /** SIGKILL, then wait for the exit */
  kill: () => Promise<void>
  /** SIGTERM (a graceful shutdown), then the exit code */
  stop: () => Promise<number | null>
}

/**
 * Runs `node --import tsx <entry…>` with only PATH and HOME of this process plus `env`. `name`
 * says what it is in error messages.
 */
export function spawnLogged (t: Test, name: string, entry: string[], env: NodeJS.ProcessEnv): LoggedChild {
  const child = spawn(process.execPath, ['--import', 'tsx', ...entry], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: Array<Record<string, unknown>> = []
  const waiters: Array<{ text: string, resolve: (line: Record<string, unknown>) => void }> = []
  const stderr: string[] = []
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()))
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    let line: Record<string, unknown>
    try { line = JSON.parse(text) } catch { return }
    lines.push(line)
    for (const waiter of [...waiters]) {
      if (String(line.msg).includes(waiter.text)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(line)
      }
    }
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const running = (): boolean => child.exitCode === null && child.signalCode === null
  const kill = async (): Promise<void> => {
    if (running()) child.kill('SIGKILL')
    await exited
  }
  t.teardown(kill)
  return {
    child,
    exited,
    kill,
    logs: (text) => lines.filter((line) => String(line.msg).includes(text)),
    stop: async () => {
      if (running()) child.kill('SIGTERM')
      return await exited
    },
    waitForLog: async (text, timeoutMs = 60_000) => {
      const found = lines.find((line) => String(line.msg).includes(text))
      if (found !== undefined) return found
      return await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${text}" log line in ${timeoutMs} ms; stderr: ${stderr.join('').slice(-2000)}`)), timeoutMs)
        exited.then((code) => { clearTimeout(timer); reject(new Error(`${name} exited (${code}) before logging "${text}"; stderr: ${stderr.join('').slice(-2000)}`)) }, () => {})
        waiters.push({ text, resolve: (line) => { clearTimeout(timer); resolve(line) } })
      })
    }
  }
}
