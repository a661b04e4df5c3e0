import t from 'tap'
import { runRole } from '../../src/shared/role-lifecycle.js'
import { silentLogger } from '../helpers/test-env.js'

t.test('a failed start closes what it opened, rethrows, and installs no signal handler', async (t) => {
  const before = process.listenerCount('SIGTERM')
  const calls: string[] = []
  const failure = new Error('no broker')
  await t.rejects(runRole('test role', silentLogger, {
    start: async () => { calls.push('start'); throw failure },
    close: async () => { calls.push('close') }
  }), failure)
  t.same(calls, ['start', 'close'])
  t.equal(process.listenerCount('SIGTERM'), before)
})

t.test('a started role is closed on SIGTERM, once', async (t) => {
  const calls: string[] = []
  let closed: () => void = () => {}
  const closing = new Promise<void>((resolve) => { closed = resolve })
  const handle = await runRole('test role', silentLogger, {
    start: async () => { calls.push('start') },
    close: async () => { calls.push('close'); closed() }
  }, 200)
  t.teardown(() => { handle.uninstall() })
  t.same(calls, ['start'])
  // close-with-grace exits the process once the close resolves: keep this test's process alive.
  const exit = process.exit
  let exitCode: number | undefined
  process.exit = ((code?: number) => { exitCode = code }) as typeof process.exit
  t.teardown(() => { process.exit = exit })
  process.emit('SIGTERM', 'SIGTERM')
  await closing
  await new Promise((resolve) => setImmediate(resolve))
  t.same(calls, ['start', 'close'])
  t.equal(exitCode, 0, 'a clean close exits 0')
})
