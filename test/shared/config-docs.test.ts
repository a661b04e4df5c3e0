import { readFile } from 'node:fs/promises'
import t from 'tap'
import { envExample, withEnvTable } from '../../scripts/env-docs.js'
import { EnvSchema } from '../../src/shared/config.js'

t.test('the README table and .env.example document exactly the variables of the config schema', async (t) => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  t.equal(readme, withEnvTable(readme), 'README.md is up to date (run npm run docs:env)')
  t.equal(await readFile(new URL('../../.env.example', import.meta.url), 'utf8'), envExample(), '.env.example is up to date (run npm run docs:env)')
  for (const name of Object.keys(EnvSchema.properties)) t.match(readme, `\`${name}\``, `README documents ${name}`)
})
