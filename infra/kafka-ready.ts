// Readiness probe for infra/infra.sh: an open port is not a working broker. Passes only once the
// broker accepts a produce with acks=all and a consumer group can join and read that record back.
import { Kafka, logLevel } from 'kafkajs'
import { randomUUID } from 'node:crypto'

const [broker = '127.0.0.1:9092', timeoutArg = '90'] = process.argv.slice(2)
const deadline = Date.now() + Number(timeoutArg) * 1000
const topic = 'coupons.infra.ready'

async function probe (): Promise<void> {
  const kafka = new Kafka({ clientId: 'infra-ready', brokers: [broker], logLevel: logLevel.NOTHING, retry: { retries: 2 } })
  const admin = kafka.admin()
  const producer = kafka.producer()
  const consumer = kafka.consumer({ groupId: `infra-ready-${randomUUID()}` })
  try {
    await admin.connect()
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true })
    await producer.connect()
    const marker = randomUUID()
    await producer.send({ topic, acks: -1, messages: [{ value: marker }] })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no record read back within 20 s')), 20_000)
      consumer.run({
        eachMessage: async ({ message }) => {
          if (message.value?.toString() === marker) { clearTimeout(timer); resolve() }
        }
      }).catch(reject)
    })
  } finally {
    await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()])
  }
}

for (;;) {
  try {
    await probe()
    process.exit(0)
  } catch (err) {
    if (Date.now() > deadline) {
      console.error(`infra: kafka readiness probe failed: ${(err as Error).message}`)
      process.exit(1)
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
}
