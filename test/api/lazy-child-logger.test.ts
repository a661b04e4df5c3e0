// The api's per-request child logger is made only when a request logs, and logs exactly what an
// eager pino child would: the request id bound, the same levels.
import Fastify, { type FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { lazyChildLogger } from '../../src/api/lazy-child-logger.js'

function capture (): { logger: pino.Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  return { logger, lines }
}

t.test('a request that logs writes the same lines as with an eager child, bound to its request id', async (t) => {
  const run = async (lazy: boolean): Promise<Array<Record<string, unknown>>> => {
    const { logger, lines } = capture()
    const app = Fastify({ loggerInstance: logger, disableRequestLogging: true, ...(lazy ? { childLoggerFactory: lazyChildLogger } : {}) })
    app.get('/logs', async (request) => {
      request.log.warn({ code: 'HAPPYHRS' }, 'a warning')
      request.log.debug('below the level')
      request.log.child({ step: 'inner' }).error('an inner error')
      return { ok: true }
    })
    t.teardown(() => app.close())
    t.equal((await app.inject({ method: 'GET', url: '/logs' })).statusCode, 200)
    return lines.map(({ time: _time, pid: _pid, hostname: _hostname, ...rest }) => rest)
  }
  const eager = await run(false)
  const lazy = await run(true)
  t.same(lazy, eager)
  t.same(lazy.map((line) => [line.level, line.reqId, line.msg]), [[40, 'req-1', 'a warning'], [50, 'req-1', 'an inner error']])
  t.equal(lazy[1].step, 'inner')
})

t.test('a request that does not log never makes its child logger', async (t) => {
  const { logger } = capture()
  let children = 0
  const app = Fastify({
    loggerInstance: logger,
    disableRequestLogging: true,
    // lazyChildLogger as the api uses it, with its parent's child() counted.
    childLoggerFactory: (parent, bindings, options) => lazyChildLogger({ child: (...args: Parameters<FastifyBaseLogger['child']>) => { children++; return parent.child(...args) } } as unknown as FastifyBaseLogger, bindings, options)
  })
  app.get('/quiet', async () => ({ ok: true }))
  app.get('/loud', async (request) => { request.log.info('hello'); request.log.info('again'); return { ok: true } })
  t.teardown(() => app.close())
  for (let i = 0; i < 10; i++) t.equal((await app.inject({ method: 'GET', url: '/quiet' })).statusCode, 200)
  t.equal(children, 0, 'ten quiet requests, no child logger')
  await app.inject({ method: 'GET', url: '/loud' })
  t.equal(children, 1, 'one for the request that logged, however many lines')
})
