// The api's PostgreSQL pool (the flash sale in direct mode, the operators' coupon list in both
// modes): made here, decorated on the app, ended with it. It connects on its first query only.
import fp from 'fastify-plugin'
import type { Pool } from 'pg'
import type { Logger } from '../../shared/logger.js'
import { createPool } from '../../shared/postgres.js'

declare module 'fastify' {
  interface FastifyInstance {
    pg: Pool
  }
}

export interface PostgresPluginOptions {
  databaseUrl: string
  logger: Logger
}

export default fp<PostgresPluginOptions>(async (fastify, options) => {
  // No connection is made until the first query: an api started during an outage still starts.
  const pool = createPool(options.databaseUrl, 'api', options.logger)
  fastify.decorate('pg', pool)
  fastify.addHook('onClose', async () => { await pool.end() })
}, { name: 'postgres' })
