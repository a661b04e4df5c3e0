// `coupons ingest` as a cron user runs it: a real child process, real Kafka and Redis.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { startRole, type RoleProcess } from '../../scripts/lib/role-process.js'
import { waitFor } from '../../scripts/lib/wait-for.js'
import { generateCoupons } from '../../src/gen/generate-coupons.js'
import { acquireFileLock } from '../../src/ingest/file-lock.js'
import { loadConfig, type Config } from '../../src/shared/config.js'
import { topicNames } from '../../src/shared/kafka.js'
import { META, redisKeys } from '../../src/shared/redis-keys.js'
import { expectedCodes, readManifests, readSegments } from '../helpers/ingest-read.js'
import { deleteRedisPrefix, deleteTopics, testKafka, uniqueName } from '../helpers/test-env.js'

const FILE = 'couponbase1.gz'

async function setup (t: Test) {
  const dir = await mkdtemp(join(tmpdir(), 'ingest-cli-'))
  await generateCoupons({ outDir: dir, scale: 0.0002, seed: 5 })
  const name = uniqueName('ingest-cli')
  const env: NodeJS.ProcessEnv = { ...process.env, REDIS_PREFIX: `${name}:`, KAFKA_TOPIC_PREFIX: `${name}.`, KAFKA_PARTITIONS: '2', COUPON_DATA_DIR: dir, LOG_LEVEL: 'info' }
  const config: Config = loadConfig(env)
  const kafka = testKafka(config)
  const redis = new Redis(config.redisUrl)
  t.teardown(async () => {
    await deleteTopics(kafka, config.kafkaTopicPrefix)
    await deleteRedisPrefix(redis, config.redisPrefix)
    redis.disconnect()
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, env, config, kafka, redis }
}

function ingest (t: Test, env: NodeJS.ProcessEnv): { cli: RoleProcess, output: () => string } {
  const cli = startRole('ingest', [FILE], env, ['ignore', 'pipe', 'pipe'])
  let output = ''
  for (const stream of [cli.child.stdout!, cli.child.stderr!]) stream.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => cli.kill())
  return { cli, output: () => output }
}

t.test('coupons ingest waits while another production holds the file, then produces it', async (t) => {
  const { dir, env, config, kafka, redis } = await setup(t)
  const lock = await acquireFileLock(redis, redisKeys(config.redisPrefix).ingestLock(FILE))
  const { cli, output } = ingest(t, env)

  await waitFor('the CLI to wait for the lock', async () => output().includes('another production of this file is running'), 60_000)
  t.same((await readManifests(kafka, topicNames(config).segments)).filter((m) => m.file === FILE), [], 'nothing produced while the lock is held')
  await lock.release()

  t.equal(await cli.exited, 0, 'exits 0 once the file is produced')
  const manifests = (await readManifests(kafka, topicNames(config).segments)).filter((m) => m.file === FILE)
  t.equal(manifests.length, 1, 'one manifest for the file')
  const expected = expectedCodes(join(dir, FILE), config.kafkaPartitions)
  t.equal(manifests[0].codes, expected.perPartition.flat().length, 'with every code of the file')
  t.equal(manifests[0].lines, expected.lines)
})

t.test('coupons ingest stopped by SIGTERM exits 143 and publishes nothing', async (t) => {
  const { env, config, kafka, redis } = await setup(t)
  const lock = await acquireFileLock(redis, redisKeys(config.redisPrefix).ingestLock(FILE))
  t.teardown(() => lock.release())
  const { cli, output } = ingest(t, env)
  await waitFor('the CLI to wait for the lock', async () => output().includes('another production of this file is running'), 60_000)

  cli.child.kill('SIGTERM')
  t.equal(await cli.exited, 143, 'the exit status of a process ended by SIGTERM, not 0')
  t.same((await readManifests(kafka, topicNames(config).segments)).filter((m) => m.file === FILE), [], 'no manifest')
})

t.test('coupons ingest of some files under a KAFKA_PARTITIONS other than the live set\'s is refused before anything is published', async (t) => {
  const { env, config, kafka, redis } = await setup(t)
  await redis.hset(redisKeys(config.redisPrefix).meta, META.partitions, '4')
  const { cli, output } = ingest(t, env)

  t.equal(await cli.exited, 1, 'exits 1')
  t.match(output(), 'KAFKA_PARTITIONS is 2 but the live set was built from segments with 4 partitions; run a full ingest (all files: couponbase1.gz, couponbase2.gz, couponbase3.gz) to re-partition')
  t.same(await readSegments(kafka, topicNames(config).segments).catch(() => []), [], 'no run record, no manifest')
})
