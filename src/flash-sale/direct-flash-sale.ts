// Direct mode of the flash sale (EVENT_DRIVEN_ENABLED=false): the api applies each request to
// PostgreSQL itself, through the same store as the flash-sale consumer.
import type { Pool } from 'pg'
import type { Logger } from '../shared/logger.js'
import type { ClaimCouponBody, ClaimOutcome, CreateCouponBody, CreateOutcome, FlashSale, GetOutcome } from './contract.js'
import { claimCoupon, createCoupon, getCoupon, migrate } from './store.js'

export interface DirectFlashSaleOptions {
  /** owned by the caller, who ends it */
  pool: Pool
  logger: Logger
}

export class DirectFlashSale implements FlashSale {
  readonly #pool: Pool
  readonly #logger: Logger
  #migrated: Promise<void> | null = null

  constructor (options: DirectFlashSaleOptions) {
    this.#pool = options.pool
    this.#logger = options.logger.child({ component: 'flash-sale' })
  }

  /**
   * Applies the pending migrations. Called at start-up; when PostgreSQL is down then, the api
   * serves anyway and the next request tries again (answering 503 until it succeeds).
   */
  async start (): Promise<void> {
    this.#migrated ??= migrate(this.#pool, this.#logger).then(
      (applied) => { if (applied.length > 0) this.#logger.info({ applied }, 'flash-sale migrations applied') },
      (err: unknown) => {
        this.#migrated = null
        throw err
      }
    )
    return this.#migrated
  }

  async create (body: CreateCouponBody): Promise<CreateOutcome> {
    await this.start()
    return createCoupon(this.#pool, body.name, body.amount)
  }

  async claim (body: ClaimCouponBody): Promise<ClaimOutcome> {
    await this.start()
    return claimCoupon(this.#pool, body.coupon_name, body.user_id)
  }

  async get (name: string): Promise<GetOutcome> {
    await this.start()
    return getCoupon(this.#pool, name)
  }
}
