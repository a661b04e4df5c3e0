// `npm run openapi`: writes openapi/openapi.json from the app itself (built and made ready, never
// listening), so the committed document is exactly what GET /docs/json serves.
import { writeFile, mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../src/api/app.js'
import type { FlashSale } from '../src/flash-sale/contract.js'
import { loadConfig } from '../src/shared/config.js'
import { createLogger } from '../src/shared/logger.js'

const notServing = async (): Promise<never> => { throw new Error('the OpenAPI generator serves no request') }
const documentOnly: FlashSale = { create: notServing, claim: notServing, get: notServing }

export const OPENAPI_PATH = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url))

/** The document as the app serves it, in the committed file's formatting. */
export async function renderOpenApi (env: NodeJS.ProcessEnv = {}): Promise<string> {
  // The document does not depend on the environment (tests pass their own Redis prefix); Redis
  // need not be up, and the flash sale is a stand-in: neither Kafka nor PostgreSQL is touched.
  const app = buildApp({ config: loadConfig({ LOG_LEVEL: 'silent', INGEST_CRON: 'off', ...env }), logger: createLogger('silent'), redisConnectWaitMs: 0, flashSale: documentOnly })
  try {
    await app.ready()
    return `${JSON.stringify(app.swagger(), null, 2)}\n`
  } finally {
    await app.close()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const document = await renderOpenApi()
  await mkdir(new URL('../openapi/', import.meta.url), { recursive: true })
  await writeFile(OPENAPI_PATH, document)
  console.log(`wrote ${OPENAPI_PATH}`)
}
