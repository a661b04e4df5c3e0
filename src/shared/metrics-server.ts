// GET /metrics of the roles without an HTTP api (aggregator, standalone worker, flash-sale
// consumer): a small node:http server on METRICS_PORT, protected like the api's /metrics
// (METRICS_TOKEN as Bearer, or METRICS_PUBLIC=true). One helper for the three roles.
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { bearerCheck } from './bearer-token.js'
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import { METRICS_PATH } from './metrics.js'
import type { RoleService } from './role-lifecycle.js'

export type MetricsAccess = Pick<Config, 'metricsToken' | 'metricsPublic'>

/** Whether a scrape with this Authorization header may read the metrics. */
export function metricsAllowed (access: MetricsAccess): (authorization: string | undefined) => boolean {
  if (access.metricsToken === undefined && access.metricsPublic) return () => true
  return bearerCheck(access.metricsToken)
}

export interface MetricsServer {
  url: string
  close: () => Promise<void>
}

export async function startMetricsServer (options: { registry: Registry, access: MetricsAccess, port: number, host: string, logger: Logger }): Promise<MetricsServer> {
  const { registry, logger } = options
  const allowed = metricsAllowed(options.access)
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0]
    if (path !== METRICS_PATH) return response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    if (request.method !== 'GET' && request.method !== 'HEAD') return response.writeHead(405, { allow: 'GET, HEAD' }).end()
    if (!allowed(request.headers.authorization)) {
      return response.writeHead(401, { 'www-authenticate': 'Bearer realm="coupons-metrics"', 'content-type': 'text/plain' }).end('a valid metrics bearer token is required\n')
    }
    registry.metrics().then(
      (text) => { response.writeHead(200, { 'content-type': registry.contentType }).end(request.method === 'HEAD' ? undefined : text) },
      (err: unknown) => {
        logger.error({ err }, 'collecting the metrics failed')
        response.writeHead(500, { 'content-type': 'text/plain' }).end('collecting the metrics failed\n')
      }
    )
  })
  // A scraper that keeps its connection open must not hold the process at shutdown.
  server.keepAliveTimeout = 5000
  server.listen(options.port, options.host)
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => { throw err })])
  const { address, port } = server.address() as AddressInfo
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}${METRICS_PATH}`
  let closing: Promise<void> | undefined
  return {
    url,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
      return closing
    }
  }
}

/**
 * `service` with a metrics server beside it when METRICS_PORT is set: started after the service
 * (a role that cannot start serves nothing), closed before it. Without METRICS_PORT, `service` itself.
 */
export function withMetricsServer (service: RoleService, options: { config: Config, registry: Registry, logger: Logger }): RoleService {
  const { config, registry, logger } = options
  if (config.metricsPort === 0) return service
  if (config.metricsToken === undefined && !config.metricsPublic) {
    logger.warn('METRICS_PORT is set but neither METRICS_TOKEN nor METRICS_PUBLIC: every scrape will be refused')
  }
  let server: MetricsServer | null = null
  return {
    start: async () => {
      await service.start?.()
      server = await startMetricsServer({ registry, access: config, port: config.metricsPort, host: config.host, logger })
      logger.info({ url: server.url }, 'metrics served')
    },
    close: async () => {
      await server?.close().catch((err: unknown) => { logger.warn({ err }, 'closing the metrics server failed') })
      await service.close()
    }
  }
}
