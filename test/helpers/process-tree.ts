// The processes of this machine as /proc shows them (Linux): who is whose child, and whether a
// process still runs. For the tests that check what a process leaves behind when it dies.
import { readdir, readFile } from 'node:fs/promises'

export interface ProcessEntry {
  pid: number
  ppid: number
  /** R, S, D, Z (exited, not yet reaped)… */
  state: string
}

async function entryOf (pid: number): Promise<ProcessEntry | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // pid (comm) state ppid …; comm may hold spaces and parentheses, so split after the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { pid, ppid: Number(ppid), state }
  } catch {
    return null // it ended while we looked
  }
}

export async function processTable (): Promise<ProcessEntry[]> {
  const pids = (await readdir('/proc')).filter((name) => /^[0-9]+$/.test(name)).map(Number)
  return (await Promise.all(pids.map(entryOf))).filter((entry) => entry !== null)
}

/** Every process below `pid` (children, their children…), not `pid` itself. */
export async function descendants (pid: number): Promise<number[]> {
  const table = await processTable()
  const found: number[] = []
  let parents = [pid]
  while (parents.length > 0) {
    const children = table.filter((entry) => parents.includes(entry.ppid)).map((entry) => entry.pid)
    found.push(...children)
    parents = children
  }
  return found
}

/** Runs: exists and is not a zombie (a zombie has exited; only its exit status waits to be reaped). */
export async function isRunning (pid: number): Promise<boolean> {
  const entry = await entryOf(pid)
  return entry !== null && entry.state !== 'Z'
}
