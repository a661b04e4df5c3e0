// Helpers for the API tests: a built app on a fresh Redis prefix, a published set, a real count of
// the Redis commands the app sends (MONITOR), and a throwaway redis-server to stop and restart.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Cluster, Redis } from 'ioredis'
import { buildApp, type App, type BuildAppOptions } from '../../src/api/app.js'
import type { FlashSale } from '../../src/flash-sale/contract.js'
import type { Config } from '../../src/shared/config.js'
import { CouponsError } from '../../src/shared/errors.js'
import { createLogger } from '../../src/shared/logger.js'
import { META, redisKeys } from '../../src/shared/redis-keys.js'
import type { RedisClient } from '../../src/shared/redis.js'
import { deleteRedisPrefix, deleteTopics, testConfig, testKafka } from './test-env.js'

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

const notConfigured = async (): Promise<never> => {
  throw new CouponsError('FLASH_SALE_UNAVAILABLE', 'this test app has no flash sale: pass EVENT_DRIVEN_ENABLED to testApp', { retriable: true })
}
const unusedFlashSale: FlashSale = { create: notConfigured, claim: notConfigured, get: notConfigured }

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestApp {
  app: App
  config: Config
  /** a plain client on the same Redis (or Redis Cluster) as the app, for arranging state */
  redis: RedisClient
}

/** A ready app on a fresh prefix; closed and cleaned up when the test ends. */
export async function testApp (t: Teardown, env: NodeJS.ProcessEnv = {}, options: Partial<BuildAppOptions> = {}): Promise<TestApp> {
  const config = testConfig('api', { ADMIN_TOKEN, ...env })
  // A test that says nothing about the flash sale gets a stand-in: no Kafka request/reply client
  // (its background fetches would skew the load-shedding test) and no PostgreSQL migrations.
  const flashSale = env.EVENT_DRIVEN_ENABLED === undefined ? { flashSale: unusedFlashSale } : {}
  // The event-loop-delay shedder is off unless a test asks for it (the load-shedding tests do): on a
  // busy CI machine the app's own start-up can stall its loop past the threshold and shed a
  // request that the test meant to check for something else.
  const app = buildApp({ config, logger: createLogger('silent'), redisConnectWaitMs: 500, maxEventLoopDelayMs: 0, ...flashSale, ...options })
  const redis: RedisClient = config.redisClusterNodes.length > 0
    ? new Cluster(config.redisClusterNodes, { lazyConnect: true, clusterRetryStrategy: () => 200, redisOptions: { maxRetriesPerRequest: 1 } })
    : new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 200 })
  redis.on('error', () => {})
  t.teardown(async () => {
    try {
      await app.close()
      // A throwaway redis-server may already be gone, and its data with it.
      if (redis.status === 'wait') await redis.connect().catch(() => {})
      if (redis.status === 'ready') await deleteRedisPrefix(redis, config.redisPrefix).catch(() => {})
      // POST /admin/ingest creates the segments topic under the test's prefix.
      await deleteTopics(testKafka(config), config.kafkaTopicPrefix)
    } finally {
      redis.disconnect()
    }
  })
  await app.ready()
  return { app, config, redis }
}

/** Publishes a valid set the way the aggregator's swap leaves it: the live SET plus meta. */
export async function publishSet (redis: RedisClient, prefix: string, codes: string[], generation = 'run-test'): Promise<void> {
  const keys = redisKeys(prefix)
  const multi = redis.multi()
  multi.del(keys.valid)
  if (codes.length > 0) multi.sadd(keys.valid, ...codes)
  multi.hset(keys.meta, {
    [META.generation]: generation,
    [META.lastSwapAt]: new Date().toISOString(),
    [META.validCount]: String(codes.length),
    [META.swapMs]: '1'
  })
  await multi.exec()
}

/**
 * Counts, through MONITOR, every command that a given client connection sends. MONITOR is
 * asynchronous, so `settle` sends a marker command over that connection and waits until it is
 * seen: every earlier command has then been seen too (Redis feeds MONITOR in order).
 */
export async function commandCounter (redisUrl: string, client: RedisClient) {
  if (!(client instanceof Redis)) throw new Error('commandCounter watches one Redis server, not a cluster')
  const source = `${client.stream.localAddress ?? ''}:${client.stream.localPort ?? ''}`
  // monitor() opens its own connection; the lazy client it is made from never connects.
  const monitor = await new Redis(redisUrl, { lazyConnect: true }).monitor()
  const commands: string[][] = []
  let markers = 0
  monitor.on('monitor', (_time: string, args: string[], from: string) => {
    if (from === source) commands.push(args)
  })
  return {
    commands,
    /** Waits until every command sent before this call is counted; the marker is not counted. */
    async settle (): Promise<void> {
      const marker = `settle-${++markers}`
      await client.echo(marker)
      for (let i = 0; i < 200; i++) {
        const at = commands.findIndex((args) => args[0]?.toLowerCase() === 'echo' && args[1] === marker)
        if (at >= 0) {
          commands.splice(at, 1)
          return
        }
        await sleep(10)
      }
      throw new Error('MONITOR never showed the marker command')
    },
    async stop (): Promise<void> { monitor.disconnect() }
  }
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** A redis-server child process of this test (no persistence: a restart loses the data, like a wiped Redis). */
export class ThrowawayRedis {
  readonly port: number
  #child: ChildProcess | null = null

  constructor (port: number) { this.port = port }

  get url (): string { return `redis://127.0.0.1:${this.port}` }

  async start (): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    this.#child = child
    const spawnFailed = new Promise<never>((_resolve, reject) => child.once('error', (err) => {
      reject(new Error(`could not start redis-server (${err.message}); install it: apt-get install redis-server, or npm run infra:up as root`))
    }))
    spawnFailed.catch(() => {}) // raced below; never left unhandled
    const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    const answered = async (): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
        try {
          await probe.connect()
          if (await probe.ping() === 'PONG') return
        } catch {
          probe.disconnect()
          await sleep(50)
        }
      }
      throw new Error(`redis-server on port ${this.port} never answered`)
    }
    try {
      await Promise.race([answered(), spawnFailed])
    } finally {
      probe.disconnect()
    }
  }

  async stop (): Promise<void> {
    const child = this.#child
    if (child === null || child.exitCode !== null || child.signalCode !== null) return
    this.#child = null
    child.kill('SIGKILL')
    await once(child, 'exit')
  }
}

/**
 * Blocks the event loop until under-pressure reports a delay above `thresholdMs`. It sheds on the
 * *mean* delay of a 1 s window of 10 ms samples minus their resolution, and where a block falls in
 * the window, and which of its timer and the delay monitor's runs first after it, is up to libuv:
 * a single 1.5 s block followed by a fixed short wait read 200 in two CI runs. So each attempt
 * blocks for 1.5 s and watches the next samples for 1.2 s; up to five attempts.
 */
export async function overloadEventLoop (app: App, thresholdMs: number): Promise<void> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const until = Date.now() + 1500
    while (Date.now() < until) { /* busy */ }
    const watchUntil = Date.now() + 1200
    while (Date.now() < watchUntil) {
      if (app.memoryUsage().eventLoopDelay > thresholdMs) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  throw new Error(`under-pressure never saw the blocked event loop (delay ${app.memoryUsage().eventLoopDelay} ms)`)
}
