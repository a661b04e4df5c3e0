// The suite runs on the supported Node.js (package.json's engines), whatever the machine's own node
// is: scripts/with-node.sh puts it first on PATH for `npm test`, and CI sources the same script.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { Kafka, logLevel } from 'kafkajs'

const ROOT = new URL('../../', import.meta.url)

t.test('the tests run on a Node.js that package.json\'s engines accepts', async (t) => {
  const pkg = JSON.parse(await readFile(new URL('package.json', ROOT), 'utf8'))
  const range = /^\^(\d+)\.(\d+)\.\d+$/.exec(pkg.engines.node)
  t.ok(range, `engines.node is a caret range (${pkg.engines.node})`)
  const [major, minor] = process.versions.node.split('.').map(Number)
  t.equal(major, Number(range![1]), `major version of ${process.version}`)
  t.ok(minor >= Number(range![2]), `${process.version} is at least ${pkg.engines.node.slice(1)}`)
  const pinned = (await readFile(new URL('.node-version', ROOT), 'utf8')).trim()
  t.equal(pinned.split('.')[0], range![1], '.node-version is in the same major line')
})

t.test('an idle KafkaJS connection schedules no negative timeouts (patches/kafkajs+2.2.4.patch)', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  // Count the timers KafkaJS's request queue arms while nothing is pending: unpatched, it re-arms a
  // 1 ms timer forever after every response.
  const admin = new Kafka({ clientId: 'node-runtime-test', brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','), logLevel: logLevel.NOTHING }).admin()
  await admin.connect()
  t.teardown(async () => { process.off('warning', onWarning); await admin.disconnect() })
  await admin.listTopics()
  const original = globalThis.setTimeout
  let armed = 0
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => { armed++; return original(...args) }) as typeof setTimeout
  try {
    await new Promise((resolve) => original(resolve, 200))
  } finally {
    globalThis.setTimeout = original
  }
  t.equal(armed, 0, 'no timer armed in 200 ms of idleness')
  t.notOk(warnings.includes('TimeoutNegativeWarning'), 'no TimeoutNegativeWarning')
})
