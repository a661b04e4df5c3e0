// The flash sale as the routes see it (DESIGN section 11): `fastify.flashSale`, applied directly to
// PostgreSQL when EVENT_DRIVEN_ENABLED=false, or sent through Kafka to the flash-sale consumer.
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { DirectFlashSale } from '../../flash-sale/direct-flash-sale.js'
import { FlashSaleRequester } from '../../flash-sale/flash-sale-requester.js'
import type { FlashSale } from '../../flash-sale/contract.js'
import type { Config } from '../../shared/config.js'
import type { Logger } from '../../shared/logger.js'

declare module 'fastify' {
  interface FastifyInstance {
    flashSale: FlashSale
  }
}

export interface FlashSalePluginOptions {
  config: Config
  logger: Logger
  /** an implementation owned by the caller (who starts and closes it); default: made here for the configured mode */
  flashSale?: FlashSale
}

/** A FlashSale made by this plugin: started when the app is ready, closed with it. */
interface OwnedFlashSale extends FlashSale {
  start: () => Promise<void>
  close?: () => Promise<void>
}

export default fp<FlashSalePluginOptions>(async (fastify, options) => {
  if (options.flashSale !== undefined) {
    fastify.decorate('flashSale', options.flashSale)
    return
  }
  const owned = options.config.eventDrivenEnabled ? eventDriven(options) : direct(fastify, options)
  fastify.decorate('flashSale', owned)
  fastify.addHook('onReady', async () => {
    // A dependency down at start-up must not keep the api from serving its other routes; the
    // flash-sale routes answer 503 until it is back.
    await owned.start().catch((err: unknown) => {
      options.logger.error({ err }, 'the flash sale could not start; its routes answer 503 until its dependency is back')
    })
  })
  fastify.addHook('onClose', async () => { await owned.close?.() })
}, { name: 'flash-sale', dependencies: ['postgres'] })

/** Direct mode: the app's pool (the postgres plugin's) and the migrations at start-up. */
function direct (fastify: FastifyInstance, options: FlashSalePluginOptions): OwnedFlashSale {
  return new DirectFlashSale({ pool: fastify.pg, logger: options.logger })
}

/**
 * Event-driven mode: the Kafka request/reply client (src/flash-sale/flash-sale-requester.ts); the
 * coupons flash-sale consumer applies the requests. A failed start is retried by later requests.
 */
function eventDriven (options: FlashSalePluginOptions): OwnedFlashSale {
  return new FlashSaleRequester({ config: options.config, logger: options.logger })
}
