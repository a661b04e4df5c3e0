// One configuration schema for every process (api, worker, aggregator, CLI tools), read from the
// environment once at start-up. Bad input fails fast with the variable's name.
import { hostname } from 'node:os'
import envSchema from 'env-schema'
import { Type, type Static } from 'typebox'
import { CouponsError } from './errors.js'

const FILE_NAME = '[A-Za-z0-9._-]+'
const FILE_NAME_RE = new RegExp(`^${FILE_NAME}$`)

/** A plain file name (what COUPON_FILES holds and what names a topic), never a path. */
export function isFileName (name: string): boolean {
  return FILE_NAME_RE.test(name) && name !== '.' && name !== '..'
}

export const EnvSchema = Type.Object({
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535, description: 'HTTP port of the api' }),
  HOST: Type.String({ default: '127.0.0.1', description: 'Interface the api listens on (0.0.0.0 in containers)' }),
  REDIS_URL: Type.String({ default: 'redis://127.0.0.1:6379', pattern: '^rediss?://', description: 'Redis for the valid set, its meta and BullMQ. With REDIS_CLUSTER_NODES set only its user, password and rediss:// (TLS) are used' }),
  REDIS_CLUSTER_NODES: Type.String({ default: '', pattern: '^([^,\\s:]+:[0-9]+(,[^,\\s:]+:[0-9]+)*)?$', description: 'Comma-separated host:port seed nodes of a Redis Cluster; empty: one Redis at REDIS_URL' }),
  REDIS_PREFIX: Type.String({ default: 'coupons:', pattern: '^[A-Za-z0-9:._-]*(\\{[A-Za-z0-9:._-]+\\})?[A-Za-z0-9:._-]*$', minLength: 1, description: 'Prefix of every Redis key (the set, meta, swaps channel and BullMQ queues). The keys of the set and of BullMQ carry hash tags derived from it (one slot each on a Redis Cluster); a prefix with a {tag} of its own is used as it is, every key in that one slot' }),
  KAFKA_BROKERS: Type.String({ default: '127.0.0.1:9092', pattern: '^[^,\\s]+(,[^,\\s]+)*$', description: 'Comma-separated host:port list' }),
  KAFKA_PARTITIONS: Type.Integer({ default: 8, minimum: 1, maximum: 1024, description: 'Partitions each data topic is produced with; a code goes to hash(code) mod this. A topic with fewer is grown; one with more keeps its extra partitions unused (Kafka cannot shrink a topic). After a change, run a full ingest (see "Changing the partition count")' }),
  KAFKA_REPLICATION_FACTOR: Type.Integer({ default: -1, minimum: -1, maximum: 32_767, description: 'Replicas of every topic the service creates (data, coupons.segments, flash sale); -1: the broker\'s default.replication.factor (and its min.insync.replicas). N >= 1 also sets min.insync.replicas to N - 1 (at least 1). Topics that already exist keep theirs' }),
  KAFKA_TOPIC_PREFIX: Type.String({ default: '', pattern: '^[A-Za-z0-9._-]*$', description: 'Prefix of every topic name (empty: topics are named exactly after the files)' }),
  COUPON_DATA_DIR: Type.String({ default: './data', minLength: 1, description: 'Folder holding the coupon files' }),
  COUPON_FILES: Type.String({ default: 'couponbase1.gz,couponbase2.gz,couponbase3.gz', pattern: `^${FILE_NAME}(,${FILE_NAME})*$`, description: 'Comma-separated file names (names, never paths) that define the valid set' }),
  MIN_FILES: Type.Integer({ default: 2, minimum: 1, description: 'Distinct files a code must appear in to be valid' }),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'Bearer token of the /admin routes; when unset every admin request is refused' })),
  INGEST_CRON: Type.String({ default: '0 3 * * *', minLength: 1, description: 'Cron pattern of the daily ingest run, or "off"' }),
  INGEST_TZ: Type.String({ default: 'UTC', minLength: 1, description: 'Time zone of INGEST_CRON' }),
  INGEST_WORKER: Type.Boolean({ default: true, description: 'Run the ingest worker inside the api process (false when workers run separately)' }),
  INGEST_CONCURRENCY: Type.Integer({ default: 3, minimum: 1, maximum: 32, description: 'Files one worker ingests at the same time' }),
  INGEST_ATTEMPTS: Type.Integer({ default: 3, minimum: 1, maximum: 20, description: 'Attempts of an ingest job for retriable errors (Kafka or Redis outages)' }),
  PIPELINE_NICE: Type.Integer({ default: 10, minimum: 0, maximum: 19, description: 'Nice value the ingest sandboxes and the aggregator give themselves, so that on a shared host the api answers checkout first during a run (they still take every idle core); 0 leaves their priority alone' }),
  RATE_LIMIT_MAX: Type.Integer({ default: 120_000, minimum: 0, description: 'Requests per client IP and window on GET /coupons/:code (0 disables). Guards against code enumeration by direct clients; the default (2,000/s) leaves room for a checkout backend calling from a few IPs. Lower it when browsers call the API directly; behind a reverse proxy set TRUST_PROXY, or every request counts against the proxy\'s IP' }),
  RATE_LIMIT_WINDOW_MS: Type.Integer({ default: 60_000, minimum: 1000, description: 'Window of RATE_LIMIT_MAX' }),
  TRUST_PROXY: Type.String({ default: 'false', pattern: '^(true|false|[0-9A-Fa-f.:/]+(,[0-9A-Fa-f.:/]+)*)$', description: 'Behind a reverse proxy: true (trust every hop) or the proxies\' addresses/CIDRs; the client IP (rate limit, logs) then comes from X-Forwarded-For' }),
  DATABASE_URL: Type.String({ default: 'postgres://postgres@127.0.0.1:5432/coupons', pattern: '^postgres(ql)?://', description: 'PostgreSQL of the flash-sale coupons (the source of truth for their stock and claims)' }),
  EVENT_DRIVEN_ENABLED: Type.Boolean({ default: true, description: 'Flash sale: true sends each request through Kafka to the flash-sale consumer; false applies it to PostgreSQL from the api directly' }),
  INSTANCE_ID: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._-]+$', description: 'Names this api instance\'s reply topic coupon.reply.<INSTANCE_ID>; default: the host name' })),
  FLASH_SALE_REPLY_TIMEOUT_MS: Type.Integer({ default: 3000, minimum: 100, maximum: 60_000, description: 'How long the api waits for the flash-sale consumer\'s reply before answering 503' }),
  FLASH_SALE_MAX_ATTEMPTS: Type.Integer({ default: 5, minimum: 1, maximum: 20, description: 'Attempts of a flash-sale request on transient PostgreSQL failures before it goes to the dead-letter topic' }),
  FLASH_SALE_RETRY_DELAY_MS: Type.Integer({ default: 500, minimum: 10, maximum: 60_000, description: 'First retry delay of a flash-sale request; doubles with each attempt' }),
  METRICS_TOKEN: Type.Optional(Type.Union([Type.Literal(''), Type.String({ minLength: 16 })], { description: 'Bearer token (16+ characters) Prometheus sends to GET /metrics (the api\'s and each METRICS_PORT server\'s); a token of its own, so a scraper cannot start runs. When unset or empty, /metrics refuses every request unless METRICS_PUBLIC=true' })),
  METRICS_PUBLIC: Type.Boolean({ default: false, description: 'Serve /metrics without a token (only where the port is reachable from the monitoring network alone); METRICS_TOKEN, when set, still wins' }),
  METRICS_PORT: Type.Integer({ default: 0, minimum: 0, maximum: 65535, description: 'Port of the /metrics server of the roles without an HTTP api (aggregator, worker, flash-sale), on HOST; 0: none (the api serves /metrics on PORT)' }),
  AGGREGATOR_GROUP_ID: Type.Optional(Type.String({ minLength: 1, pattern: '^[A-Za-z0-9._-]+$', description: 'Kafka consumer group of the aggregator instances: the instances sharing it split the partitions of every run. Default: KAFKA_TOPIC_PREFIX + "coupons-aggregator", one group per deployment' })),
  AGGREGATOR_MAX_ATTEMPTS: Type.Integer({ default: 5, minimum: 1, maximum: 50, description: 'Attempts an aggregator instance makes at its partitions of a run on transient failures (Kafka or Redis trouble) before it records the run failed; errors that a retry cannot fix fail it at once' }),
  AGGREGATOR_RETRY_DELAY_MS: Type.Integer({ default: 5000, minimum: 10, maximum: 300_000, description: 'First retry delay of an aggregation after a transient failure; doubles with each attempt, up to 60 s' }),
  AGGREGATOR_DECIDE_THREADS: Type.Integer({ default: 2, minimum: 1, maximum: 64, description: 'Worker threads each aggregator instance decides its partitions on (src/aggregator/decide-words.ts). A partition is read while the one before is decided on a thread. At full size deciding now takes less time than reading, so the second thread is seldom busy; it is there for slower or busier cores, where a partition read while another is still decided starts on it. Each busy thread holds a partition state (see AGGREGATOR_STATE_MEMORY_MB)' }),
  AGGREGATOR_STATE_MEMORY_MB: Type.Integer({ default: 640, minimum: 16, description: 'Most memory (MiB) of partition states one aggregator instance holds: each is 8 bytes a code of its largest partition (plus under 4 %: a partly filled chunk a bucket), and it holds as many as fit, up to AGGREGATOR_DECIDE_THREADS + 1 (one read while the others are decided) but never fewer than two, even beyond this (it warns; more KAFKA_PARTITIONS make each smaller). The process needs about 250 MB besides. The default holds two states of the full-size run (313 M codes in 8 partitions: 313 MB each), under 1 GiB in all' }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)), { default: 'info', description: 'pino level of every process (KafkaJS logs follow it)' })
})

export type Env = Static<typeof EnvSchema>

export interface Config {
  port: number
  host: string
  redisUrl: string
  /** seed nodes of a Redis Cluster; empty: the one Redis at redisUrl */
  redisClusterNodes: Array<{ host: string, port: number }>
  redisPrefix: string
  kafkaBrokers: string[]
  kafkaPartitions: number
  /** -1: the broker's default.replication.factor */
  kafkaReplicationFactor: number
  kafkaTopicPrefix: string
  couponDataDir: string
  couponFiles: string[]
  minFiles: number
  adminToken: string | undefined
  /** null when the daily run is off */
  ingestCron: string | null
  ingestTz: string
  ingestWorker: boolean
  ingestConcurrency: number
  pipelineNice: number
  ingestAttempts: number
  rateLimitMax: number
  rateLimitWindowMs: number
  /** Fastify's trustProxy: whom to believe about the client's address */
  trustProxy: boolean | string
  databaseUrl: string
  eventDrivenEnabled: boolean
  instanceId: string
  flashSaleReplyTimeoutMs: number
  flashSaleMaxAttempts: number
  flashSaleRetryDelayMs: number
  /** Bearer token of /metrics; undefined: refused unless metricsPublic */
  metricsToken: string | undefined
  metricsPublic: boolean
  /** 0: no metrics server (roles other than the api) */
  metricsPort: number
  aggregatorGroupId: string
  aggregatorMaxAttempts: number
  aggregatorRetryDelayMs: number
  aggregatorDecideThreads: number
  /** the budget of partition states, in bytes */
  aggregatorStateMemoryBytes: number
  logLevel: Env['LOG_LEVEL']
}

export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  let raw: Env
  try {
    raw = envSchema<Env>({ schema: EnvSchema, data: env, dotenv: false })
  } catch (err) {
    // env-schema's messages already name the variable ("env/PORT must be integer").
    throw new CouponsError('CONFIG_INVALID', `invalid configuration: ${(err as Error).message}`, { cause: err })
  }
  const couponFiles = raw.COUPON_FILES.split(',')
  const bad = couponFiles.find((file) => !isFileName(file))
  if (bad !== undefined) throw new CouponsError('CONFIG_INVALID', `invalid configuration: COUPON_FILES has "${bad}", which is not a file name`)
  if (new Set(couponFiles).size !== couponFiles.length) {
    throw new CouponsError('CONFIG_INVALID', 'invalid configuration: COUPON_FILES lists a file twice')
  }
  if (raw.KAFKA_REPLICATION_FACTOR === 0) {
    throw new CouponsError('CONFIG_INVALID', 'invalid configuration: KAFKA_REPLICATION_FACTOR must be -1 (the broker\'s default) or at least 1')
  }
  if (raw.MIN_FILES > couponFiles.length) {
    throw new CouponsError('CONFIG_INVALID', `invalid configuration: MIN_FILES (${raw.MIN_FILES}) is larger than the number of COUPON_FILES (${couponFiles.length})`)
  }
  return Object.freeze({
    port: raw.PORT,
    host: raw.HOST,
    redisUrl: raw.REDIS_URL,
    redisClusterNodes: raw.REDIS_CLUSTER_NODES === '' ? [] : raw.REDIS_CLUSTER_NODES.split(',').map(parseHostPort),
    redisPrefix: raw.REDIS_PREFIX,
    kafkaBrokers: raw.KAFKA_BROKERS.split(','),
    kafkaPartitions: raw.KAFKA_PARTITIONS,
    kafkaReplicationFactor: raw.KAFKA_REPLICATION_FACTOR,
    kafkaTopicPrefix: raw.KAFKA_TOPIC_PREFIX,
    couponDataDir: raw.COUPON_DATA_DIR,
    couponFiles,
    minFiles: raw.MIN_FILES,
    adminToken: raw.ADMIN_TOKEN,
    ingestCron: raw.INGEST_CRON.toLowerCase() === 'off' ? null : raw.INGEST_CRON,
    ingestTz: raw.INGEST_TZ,
    ingestWorker: raw.INGEST_WORKER,
    ingestConcurrency: raw.INGEST_CONCURRENCY,
    pipelineNice: raw.PIPELINE_NICE,
    ingestAttempts: raw.INGEST_ATTEMPTS,
    rateLimitMax: raw.RATE_LIMIT_MAX,
    rateLimitWindowMs: raw.RATE_LIMIT_WINDOW_MS,
    trustProxy: raw.TRUST_PROXY === 'true' ? true : raw.TRUST_PROXY === 'false' ? false : raw.TRUST_PROXY,
    databaseUrl: raw.DATABASE_URL,
    eventDrivenEnabled: raw.EVENT_DRIVEN_ENABLED,
    instanceId: raw.INSTANCE_ID ?? hostname().replace(/[^A-Za-z0-9._-]/g, '-'),
    flashSaleReplyTimeoutMs: raw.FLASH_SALE_REPLY_TIMEOUT_MS,
    flashSaleMaxAttempts: raw.FLASH_SALE_MAX_ATTEMPTS,
    flashSaleRetryDelayMs: raw.FLASH_SALE_RETRY_DELAY_MS,
    // Empty is unset: compose passes `${METRICS_TOKEN:-}` through whether or not the operator set one.
    metricsToken: raw.METRICS_TOKEN === '' ? undefined : raw.METRICS_TOKEN,
    metricsPublic: raw.METRICS_PUBLIC,
    metricsPort: raw.METRICS_PORT,
    aggregatorGroupId: raw.AGGREGATOR_GROUP_ID ?? `${raw.KAFKA_TOPIC_PREFIX}coupons-aggregator`,
    aggregatorMaxAttempts: raw.AGGREGATOR_MAX_ATTEMPTS,
    aggregatorRetryDelayMs: raw.AGGREGATOR_RETRY_DELAY_MS,
    aggregatorDecideThreads: raw.AGGREGATOR_DECIDE_THREADS,
    aggregatorStateMemoryBytes: raw.AGGREGATOR_STATE_MEMORY_MB * 1024 * 1024,
    logLevel: raw.LOG_LEVEL
  })
}

function parseHostPort (node: string): { host: string, port: number } {
  const at = node.lastIndexOf(':')
  const port = Number(node.slice(at + 1))
  if (port < 1 || port > 65535) throw new CouponsError('CONFIG_INVALID', `invalid configuration: REDIS_CLUSTER_NODES has "${node}", whose port is not 1–65535`)
  return { host: node.slice(0, at), port }
}

/**
 * The files of one run (admin request, CLI or scheduler): at least one, each a name from
 * COUPON_FILES (so never a path), none twice. Throws a CouponsError naming the problem.
 */
export function checkRunFiles (config: Pick<Config, 'couponFiles'>, files: readonly string[]): void {
  if (files.length === 0) throw new CouponsError('INGEST_NO_FILES', `a run needs at least one file; the configured files are ${config.couponFiles.join(', ')}`)
  const unknown = files.filter((file) => !config.couponFiles.includes(file))
  if (unknown.length > 0) {
    throw new CouponsError('INGEST_UNKNOWN_FILE', `unknown file ${unknown.map((file) => JSON.stringify(file)).join(', ')}; the configured files are ${config.couponFiles.join(', ')}`)
  }
  if (new Set(files).size !== files.length) throw new CouponsError('INGEST_DUPLICATE_FILE', 'a file is listed twice')
}
