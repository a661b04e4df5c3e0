// Static checks of docker-compose.pipeline.yaml (no Docker engine runs here): compose itself
// validates the file when a compose tool is installed, and every command and variable the file
// gives the service's image must exist in the CLI and the config schema.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import t from 'tap'
import { parse } from 'yaml'
import { EnvSchema, loadConfig } from '../../src/shared/config.js'

const run = promisify(execFile)
const COMPOSE_FILE = new URL('../../docker-compose.pipeline.yaml', import.meta.url)
const ROOT = new URL('../../', import.meta.url)
const TOKEN = 'compose-test-token-0123456789'

interface Service {
  image?: string
  build?: unknown
  command?: string[]
  environment?: Record<string, string>
  volumes?: string[]
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { test: string[] }
}

async function composeFile (): Promise<{ services: Record<string, Service> }> {
  return parse(await readFile(COMPOSE_FILE, 'utf8'), { merge: true })
}

/** Resolves ${VAR:?…} and ${VAR:-default} the way compose does, with ADMIN_TOKEN set. */
function interpolate (value: string): string {
  return value.replace(/\$\{(\w+)(?::[?-]([^}]*))?\}/g, (_match, name: string, fallback: string | undefined) => name === 'ADMIN_TOKEN' ? TOKEN : fallback ?? '')
}

/** A compose CLI, if this machine has one: Docker's plugin or Debian's docker-compose. */
async function composeCommand (): Promise<string[] | null> {
  for (const candidate of [['docker', 'compose'], ['docker-compose']]) {
    try {
      await run(candidate[0], [...candidate.slice(1), 'version'])
      return candidate
    } catch {}
  }
  return null
}

async function cliCommands (): Promise<string[]> {
  const { stderr, stdout } = await run(process.execPath, ['--import=tsx', 'src/cli.ts', '--help'], { cwd: ROOT })
  return `${stdout}${stderr}`.split('\n').flatMap((line) => /^ {2}(\S+)/.exec(line)?.[1] ?? [])
}

const compose = await composeCommand()
const noCompose = 'no compose tool here: install Debian\'s docker-compose (apt-get install docker-compose) or the docker compose plugin to run this check'

t.test('compose accepts the file', { skip: compose === null ? noCompose : false }, async (t) => {
  if (compose === null) return
  const file = new URL(COMPOSE_FILE).pathname
  const { stdout } = await run(compose[0], [...compose.slice(1), '-f', file, 'config', '--quiet'], { env: { ...process.env, ADMIN_TOKEN: TOKEN } })
  t.equal(stdout.trim(), '', `${compose.join(' ')} config: valid`)
  await t.rejects(
    run(compose[0], [...compose.slice(1), '-f', file, 'config', '--quiet'], { env: { ...process.env, ADMIN_TOKEN: '' } }),
    /ADMIN_TOKEN/,
    'refuses to start the api without an admin token'
  )
})

t.test('the pipeline has kafka (KRaft), redis, postgres, api, worker, aggregator and the flash-sale consumer', async (t) => {
  const { services } = await composeFile()
  t.same(Object.keys(services).sort(), ['aggregator', 'api', 'flash-sale', 'kafka', 'postgres', 'redis', 'worker'])
  t.match(services.kafka.image, /^apache\/kafka:3\.9\.\d+$/)
  t.match(services.kafka.environment?.KAFKA_PROCESS_ROLES, /controller/, 'KRaft: the broker is its own controller')
  t.equal(services.kafka.environment?.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, '1', 'single node')
  t.match(services.redis.image, /^redis:/)
  t.match(services.postgres.image, /^postgres:\d+/)
})

t.test('every app service runs one image with a command of the CLI and variables of the config schema', async (t) => {
  const { services } = await composeFile()
  const commands = await cliCommands()
  t.ok(['api', 'worker', 'aggregator', 'flash-sale'].every((command) => commands.includes(command)), `the CLI lists its commands (${commands.join(', ')})`)
  const known = Object.keys(EnvSchema.properties)
  const apps = Object.entries(services).filter(([, service]) => service.build !== undefined)
  t.same(apps.map(([name]) => name).sort(), ['aggregator', 'api', 'flash-sale', 'worker'])
  t.equal(new Set(apps.map(([, service]) => service.image)).size, 1, 'one image for every role')
  for (const [name, service] of apps) {
    t.ok(service.command?.[0] !== undefined && commands.includes(service.command[0]), `${name}: "${service.command?.join(' ')}" is a CLI command`)
    const environment = Object.fromEntries(Object.entries(service.environment ?? {}).map(([key, value]) => [key, interpolate(String(value))]))
    for (const key of Object.keys(environment)) t.ok(known.includes(key), `${name}: ${key} is in the config schema`)
    t.doesNotThrow(() => loadConfig(environment), `${name}: its environment is a valid configuration`)
  }
  t.equal(services.api.environment?.INGEST_WORKER, 'false', 'the api leaves ingest to the worker service')
})

t.test('every role can be scraped: the api on its port, the others on METRICS_PORT inside the network, one METRICS_TOKEN', async (t) => {
  const { services } = await composeFile()
  for (const name of ['api', 'worker', 'aggregator', 'flash-sale']) {
    t.equal(services[name].environment?.METRICS_TOKEN, '$' + '{METRICS_TOKEN:-}', `${name}: METRICS_TOKEN is passed through (empty: /metrics closed)`)
  }
  for (const name of ['worker', 'aggregator', 'flash-sale']) {
    const config = loadConfig(Object.fromEntries(Object.entries(services[name].environment ?? {}).map(([key, value]) => [key, interpolate(String(value))])))
    t.equal(config.metricsPort, 9464, `${name}: a /metrics server on 9464`)
    t.equal(config.host, '0.0.0.0', `${name}: reachable from the other containers`)
    t.equal(config.metricsToken, undefined, `${name}: without METRICS_TOKEN set, no token (closed), not an empty one`)
    t.notOk((services[name] as { ports?: unknown }).ports, `${name}: not published on the host`)
  }
})

t.test('the worker reads the data folder read-only at COUPON_DATA_DIR', async (t) => {
  const { services } = await composeFile()
  const worker = services.worker
  const mount = worker.volumes?.map((volume) => interpolate(volume).split(':')).find((parts) => parts[1] === worker.environment?.COUPON_DATA_DIR)
  t.ok(mount, 'the data folder is mounted at COUPON_DATA_DIR')
  t.equal(mount?.[2], 'ro', 'read-only')
})

t.test('the api and the flash-sale consumer share one PostgreSQL database: the compose postgres service', async (t) => {
  const { services } = await composeFile()
  const postgres = services.postgres.environment ?? {}
  for (const name of ['api', 'flash-sale']) {
    const url = new URL(interpolate(services[name].environment?.DATABASE_URL ?? ''))
    t.equal(url.hostname, 'postgres', `${name}: DATABASE_URL names the postgres service`)
    t.equal(url.pathname, `/${postgres.POSTGRES_DB}`, `${name}: the database postgres creates`)
    t.equal(decodeURIComponent(url.username), postgres.POSTGRES_USER, `${name}: its user`)
    t.equal(decodeURIComponent(url.password), interpolate(postgres.POSTGRES_PASSWORD ?? ''), `${name}: its password`)
  }
  t.equal(services.api.environment?.EVENT_DRIVEN_ENABLED, 'true', 'the api sends flash-sale requests to the consumer')
  t.notOk((services.postgres as { ports?: unknown }).ports, 'PostgreSQL is not published on the host')
})

t.test('services wait for healthy dependencies, and those have health checks', async (t) => {
  const { services } = await composeFile()
  const needs: Record<string, string[]> = {
    api: ['kafka', 'postgres', 'redis'],
    worker: ['kafka', 'redis'],
    aggregator: ['kafka', 'redis'],
    'flash-sale': ['kafka', 'postgres']
  }
  for (const [name, expected] of Object.entries(needs)) {
    const dependsOn = services[name].depends_on ?? {}
    t.same(Object.keys(dependsOn).sort(), expected, `${name} depends on ${expected.join(', ')}`)
    for (const [dependency, { condition }] of Object.entries(dependsOn)) {
      t.equal(condition, 'service_healthy', `${name} waits until ${dependency} is healthy`)
      t.ok(services[dependency].healthcheck?.test, `${dependency} has a health check`)
    }
  }
  t.match(services.api.healthcheck?.test.join(' '), /\/health/, 'the api is checked through GET /health')
})
