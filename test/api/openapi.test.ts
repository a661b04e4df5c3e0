import { readFile } from 'node:fs/promises'
import t from 'tap'
import { OPENAPI_PATH, renderOpenApi } from '../../scripts/generate-openapi.js'
import { testApp } from '../helpers/api-env.js'
import { uniqueName } from '../helpers/test-env.js'

t.test('the committed openapi/openapi.json is what the app serves (run `npm run openapi` after changing a route)', async (t) => {
  const committed = await readFile(OPENAPI_PATH, 'utf8')
  t.equal(await renderOpenApi({ REDIS_PREFIX: `${uniqueName('openapi')}:` }), committed, 'the generator writes the committed file byte for byte')

  const { app } = await testApp(t)
  const served = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(served.statusCode, 200)
  t.same(served.json(), JSON.parse(committed), 'GET /docs/json serves the same document')
})

t.test('every route of the document has a summary, tags and a schema for each response', async (t) => {
  const document = JSON.parse(await readFile(OPENAPI_PATH, 'utf8'))
  for (const [path, methods] of Object.entries<Record<string, { summary?: string, tags?: string[], responses: Record<string, { content?: unknown }> }>>(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      t.ok(operation.summary, `${method} ${path} has a summary`)
      t.ok(operation.tags?.length, `${method} ${path} has tags`)
      for (const [status, response] of Object.entries(operation.responses)) {
        t.ok(response.content, `${method} ${path} ${status} has a schema`)
      }
    }
  }
})
