// Peak memory of a process and everything it starts (BullMQ sandboxes run in child processes),
// sampled from /proc: Linux only, which is where the benchmarks run.
import { readdir, readFile } from 'node:fs/promises'

async function children (pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  const lists = await Promise.all(tasks.map(async (task) => await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')))
  return lists.flatMap((list) => list.split(' ').filter(Boolean).map(Number))
}

async function rssKb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

/** Samples the summed RSS of the tree under `pid` every `intervalMs`; `stop()` returns the peak in MiB. */
export function trackPeakRss (pid: number, intervalMs = 200): { stop: () => number } {
  let peakKb = 0
  let sampling = false
  const sample = async (): Promise<void> => {
    const pids = [pid]
    for (let i = 0; i < pids.length; i++) pids.push(...await children(pids[i]))
    const total = (await Promise.all(pids.map(rssKb))).reduce((a, b) => a + b, 0)
    peakKb = Math.max(peakKb, total)
  }
  const timer = setInterval(() => {
    if (sampling) return
    sampling = true
    sample().catch(() => {}).finally(() => { sampling = false })
  }, intervalMs)
  return { stop: () => { clearInterval(timer); return peakKb / 1024 } }
}
