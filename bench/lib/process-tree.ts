// Peak memory and CPU time of a process and everything it starts (BullMQ sandboxes run in child
// processes), read from /proc: Linux only, which is where the benchmarks run.
import { readdir, readFile } from 'node:fs/promises'

async function children (pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  const lists = await Promise.all(tasks.map(async (task) => await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')))
  return lists.flatMap((list) => list.split(' ').filter(Boolean).map(Number))
}

/** Every pid of the tree under `pid`, `pid` first. */
async function treeOf (pid: number): Promise<number[]> {
  const pids = [pid]
  for (let i = 0; i < pids.length; i++) pids.push(...await children(pids[i]))
  return pids
}

/** USER_HZ: the unit of the times in /proc/<pid>/stat (100 on every Linux the benches run on). */
const CLOCK_TICKS_PER_S = 100

/**
 * CPU seconds used so far by the tree under `pid`, exited descendants included: each live process's
 * own user + system time plus the time of its children that exited and were reaped (cutime,
 * cstime), so every process is counted once, live or gone.
 */
export async function treeCpuSeconds (pid: number): Promise<number> {
  const stats = await Promise.all((await treeOf(pid)).map(async (p) => await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '')))
  let ticks = 0
  for (const stat of stats) {
    // Fields after the command name, which is in parentheses and may hold spaces: utime is field 14.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    for (const field of fields.slice(11, 15)) ticks += Number(field) || 0
  }
  return ticks / CLOCK_TICKS_PER_S
}

async function rssKb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

async function commandLine (pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')
}

/**
 * Samples the summed RSS of the tree under `pid` every `intervalMs`; `stop()` returns the peak in
 * MiB, and `peakChildMb()` the peak of any one process under `pid` whose command line contains
 * `childMatch` (BullMQ's sandboxed children: bullmq/dist/.../main.js).
 */
export function trackPeakRss (pid: number, intervalMs = 200, childMatch = 'bullmq'): { stop: () => number, peakChildMb: () => number } {
  let peakKb = 0
  let peakChildKb = 0
  let sampling = false
  const sample = async (): Promise<void> => {
    const pids = await treeOf(pid)
    const each = await Promise.all(pids.map(rssKb))
    peakKb = Math.max(peakKb, each.reduce((a, b) => a + b, 0))
    const matching = await Promise.all(pids.slice(1).map(async (child) => (await commandLine(child)).includes(childMatch)))
    for (let i = 1; i < pids.length; i++) if (matching[i - 1]) peakChildKb = Math.max(peakChildKb, each[i])
  }
  const timer = setInterval(() => {
    if (sampling) return
    sampling = true
    sample().catch(() => {}).finally(() => { sampling = false })
  }, intervalMs)
  return { stop: () => { clearInterval(timer); return peakKb / 1024 }, peakChildMb: () => peakChildKb / 1024 }
}
