// lowerPriority, in a child process of its own (a nice value cannot be taken back without privileges).
import { execFile } from 'node:child_process'
import { getPriority } from 'node:os'
import { promisify } from 'node:util'
import t from 'tap'

const child = `
  import { readdirSync } from 'node:fs'
  import { getPriority } from 'node:os'
  import { lowerPriority } from './src/shared/process-priority.ts'
  const logger = { debug () {}, warn (o) { console.error(o) } }
  lowerPriority(Number(process.argv[1]), logger)
  await new Promise((resolve) => setTimeout(resolve, 10))
  const threads = readdirSync('/proc/self/task').map((tid) => getPriority(Number(tid)))
  console.log(JSON.stringify({ main: getPriority(), threads }))
`

async function niceOf (nice: number): Promise<{ main: number, threads: number[] }> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child, String(nice)])
  return JSON.parse(stdout)
}

t.test('gives the process and every thread it runs the nice value', { skip: process.platform !== 'linux' && 'per-thread nice values are Linux only' }, async (t) => {
  const { main, threads } = await niceOf(7)
  t.equal(main, 7)
  t.ok(threads.length > 1, `${threads.length} threads`)
  t.same([...new Set(threads)], [7], 'every thread, including those started before')
})

t.test('0 leaves the priority alone, and a process already lower is not raised', async (t) => {
  t.equal((await niceOf(0)).main, getPriority(), 'the nice value it inherited')
  t.equal((await niceOf(Math.max(0, getPriority() - 1))).main, getPriority())
})
