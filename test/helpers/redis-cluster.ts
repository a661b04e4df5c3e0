// A real three-master Redis Cluster for tests, made of redis-server children of this process on
// free local ports: started, joined with `redis-cli --cluster create` and awaited until every node
// says cluster_state:ok; stopped by their own pids, with their temporary folder, when the test ends.
// The binaries come from Debian's redis-server package (redis-cli is in redis-tools, which it
// depends on), which `npm run infra:up` (and so `npm test`) installs when it is missing.
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** A redis-server's cluster bus listens on its port + 10000 (Redis's default). */
const BUS_OFFSET = 10_000

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestRedisCluster {
  nodes: Array<{ host: string, port: number }>
  /** the nodes as REDIS_CLUSTER_NODES wants them */
  env: string
}

/** Why a cluster cannot be started here, or false when it can: what to pass to tap's `skip`. */
export function redisClusterSkipReason (): string | false {
  for (const tool of ['redis-server', 'redis-cli']) {
    const probe = spawnSync(tool, ['--version'], { stdio: 'ignore' })
    if (probe.error !== undefined || probe.status !== 0) {
      return `${tool} is not installed: npm run infra:up (as root) installs Debian's redis-server, or apt-get install redis-server`
    }
  }
  return false
}

/** Starts a cluster of `masters` nodes (no replicas) that lives until the test ends. */
export async function startRedisCluster (t: Teardown, masters = 3): Promise<TestRedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'coupons-redis-cluster-'))
  const children: ChildProcess[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      process.kill(child.pid as number, 'SIGKILL')
      await exited
    }))
    await rm(dir, { recursive: true, force: true })
  }
  t.teardown(stop)
  try {
    const ports: number[] = []
    while (ports.length < masters) {
      const port = await freeClusterPort()
      if (!ports.includes(port)) ports.push(port)
    }
    for (const port of ports) {
      const child = spawn('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '5000',
        '--dir', dir, '--save', '', '--appendonly', 'no', '--logfile', join(dir, `redis-${port}.log`)
      ], { stdio: 'ignore' })
      children.push(child)
      child.once('error', () => {}) // a spawn failure shows as the node never answering, below
    }
    await Promise.all(ports.map(async (port, i) => await waitFor(async () => {
      if (children[i].exitCode !== null) throw new Error(`redis-server on port ${port} exited with ${children[i].exitCode} (log: ${dir})`)
      return (await cli(port, 'ping')) === 'PONG'
    }, `redis-server on port ${port} to answer`)))
    await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 })
    await Promise.all(ports.map(async (port) => await waitFor(async () => (await cli(port, 'cluster', 'info')).includes('cluster_state:ok'), `node ${port} to say cluster_state:ok`)))
    const nodes = ports.map((port) => ({ host: '127.0.0.1', port }))
    return { nodes, env: nodes.map(({ host, port }) => `${host}:${port}`).join(',') }
  } catch (err) {
    await stop()
    throw err
  }
}

async function cli (port: number, ...args: string[]): Promise<string> {
  try {
    return (await run('redis-cli', ['-p', String(port), ...args], { timeout: 5000 })).stdout.trim()
  } catch {
    return ''
  }
}

async function waitFor (check: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${ms} ms`)
    await sleep(100)
  }
}

/** A free port whose cluster bus port (+10000) is free too. */
async function freeClusterPort (): Promise<number> {
  for (;;) {
    const port = await listenOnce(0)
    if (port + BUS_OFFSET <= 65_535 && await listenOnce(port + BUS_OFFSET).then(() => true, () => false)) return port
  }
}

async function listenOnce (port: number): Promise<number> {
  const server = createServer()
  server.listen(port, '127.0.0.1')
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => { throw err })])
  const { port: bound } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return bound
}
