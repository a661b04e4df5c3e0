// Removing what a test or a benchmark made on the real services: every Redis key under its prefix
// and every topic under its topic prefix. Shared by test/ and bench/ (which must not import each
// other); production code never deletes by prefix, so this is tooling, not src/.
import { Cluster } from 'ioredis'
import type { Kafka } from 'kafkajs'
import { redisKeyPatterns } from '../../src/shared/redis-keys.js'
import type { RedisClient } from '../../src/shared/redis.js'

/**
 * Deletes every Redis key under the prefix, hash-tagged ones included (SCAN + UNLINK: never KEYS,
 * never a blocking DEL). On a cluster SCAN sees one node's keys, so every master is scanned, and
 * its keys are unlinked one per command: one UNLINK may not span hash slots.
 */
export async function deleteRedisPrefix (redis: RedisClient, prefix: string): Promise<void> {
  const cluster = redis instanceof Cluster
  for (const node of cluster ? redis.nodes('master') : [redis]) {
    for (const pattern of redisKeyPatterns(prefix)) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
        if (keys.length > 0 && cluster) {
          const pipeline = node.pipeline()
          for (const key of keys) pipeline.unlink(key)
          await pipeline.exec()
        } else if (keys.length > 0) {
          await node.unlink(...keys)
        }
        cursor = next
      } while (cursor !== '0')
    }
  }
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
