// Removing what a test or a benchmark made on the real services: every Redis key under its prefix
// and every topic under its topic prefix. Shared by test/ and bench/ (which must not import each
// other); production code never deletes by prefix, so this is tooling, not src/.
import type { Redis } from 'ioredis'
import type { Kafka } from 'kafkajs'

/** Deletes every Redis key under the prefix (SCAN + UNLINK: never KEYS, never a blocking DEL). */
export async function deleteRedisPrefix (redis: Redis, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    if (keys.length > 0) await redis.unlink(...keys)
    cursor = next
  } while (cursor !== '0')
}

/** Deletes every topic whose name starts with the prefix. */
export async function deleteTopics (kafka: Kafka, prefix: string): Promise<void> {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix))
    if (topics.length > 0) await admin.deleteTopics({ topics })
  } finally {
    await admin.disconnect()
  }
}
