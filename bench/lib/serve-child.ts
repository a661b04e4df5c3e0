// A server a benchmark runs in a child process of its own (so its CPU and memory are not the load
// generator's): the script prints its URL on stdout once it listens, and stops on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { NODE_FLAGS } from '../../src/shared/node-flags.js'

/**
 * Runs `node <NODE_FLAGS> --import=tsx <script> <args…>` (the flags every coupons process starts
 * with, src/shared/node-flags.ts) and resolves with the first URL it prints.
 */
export async function startServeChild (script: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess, url: string }> {
  const child = spawn(process.execPath, [...NODE_FLAGS, '--import=tsx', script, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  for await (const chunk of child.stdout!) {
    output += String(chunk)
    const url = /http:\/\/\S+/.exec(output)?.[0]
    if (url !== undefined) return { child, url }
  }
  throw new Error(`the server of ${args.join(' ')} did not start`)
}

export async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  await once(child, 'exit')
}
