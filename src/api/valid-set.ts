// The public route's view of the live set (DESIGN section 6): one SISMEMBER per lookup. A member
// is valid; a non-member is invalid only once a set is known to have been published, because an
// empty published set deletes the live key and a never-published (or wiped) Redis looks the same.
import type { RedisClient } from '../shared/redis.js'
import { META, redisKeys, type RedisKeys } from '../shared/redis-keys.js'

export type Lookup = 'valid' | 'invalid' | 'unpublished'

export class ValidSet {
  readonly #redis: RedisClient
  readonly #keys: RedisKeys
  /**
   * Set once meta has a generation, so a non-member costs one command from then on. Forgotten on
   * every disconnect: a Redis that comes back without its data must not turn "unknown" into 404.
   */
  #published = false

  constructor (redis: RedisClient, prefix: string) {
    this.#redis = redis
    this.#keys = redisKeys(prefix)
    redis.on('close', () => { this.#published = false })
  }

  /** Throws when Redis cannot answer: the caller must say 503, never "invalid". */
  async lookup (code: string): Promise<Lookup> {
    if (await this.#redis.sismember(this.#keys.valid, code) === 1) {
      this.#published = true
      return 'valid'
    }
    if (this.#published) return 'invalid'
    if (await this.#redis.hexists(this.#keys.meta, META.generation) === 1) {
      this.#published = true
      return 'invalid'
    }
    return 'unpublished'
  }
}
