// GET /dashboard: the operators' page (plain files in src/api/dashboard/, copied to dist/ by the
// build). It embeds no secret and no data: it asks for the admin token, keeps it in the tab's
// sessionStorage and calls the documented /admin routes with it, like any other client.
import { fileURLToPath } from 'node:url'
import type { FastifyPluginAsync } from 'fastify'
import fastifyStatic from '@fastify/static'
import { shedOnlyWhenOverloaded } from '../http-errors.js'

/** The page's files, beside this module's folder in src/ and in dist/ alike. */
export const DASHBOARD_DIR = fileURLToPath(new URL('../dashboard/', import.meta.url))

// Nothing but the page's own files, and no framing (clickjacking of the Start button).
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // A new deployment's page is picked up at the next load.
  'cache-control': 'no-cache'
}

const dashboardRoutes: FastifyPluginAsync = async (fastify) => {
  // The page needs no Redis: during an outage it still loads and says what the /admin routes
  // answer. Only an overloaded process sheds it.
  fastify.addHook('onRoute', (route) => { route.config = { ...route.config, pressureHandler: shedOnlyWhenOverloaded } })
  await fastify.register(fastifyStatic, {
    root: DASHBOARD_DIR,
    prefix: '/dashboard/',
    // One route per file, found at start-up: nothing else under the folder is ever served.
    wildcard: false,
    index: ['index.html'],
    // Swagger UI brings its own copy of this plugin: neither decorates the reply.
    decorateReply: false,
    setHeaders: (reply) => { reply.headers(SECURITY_HEADERS) }
  })
  // The address an operator types; the page's relative links need the trailing slash.
  fastify.get('/dashboard', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/dashboard/'))
}

export default dashboardRoutes
