// The flash-sale contract, declared once (DESIGN section 11): the HTTP bodies, the Kafka request and
// reply messages, and the outcomes every implementation returns. The routes, the request/reply
// client, the consumer and the PostgreSQL store all import from here.
import { Type, type Static } from 'typebox'

export const CouponName = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9_-]+$',
  description: '1 to 64 ASCII letters, digits, "_" or "-"; case-sensitive',
  examples: ['PROMO_SUPER']
})

export const Amount = Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Stock: how many users can claim the coupon', examples: [100] })

export const UserId = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9_.@:-]+$',
  description: '1 to 128 ASCII letters, digits or "_ . @ : -"',
  examples: ['user_12345']
})

export const CreateCouponBody = Type.Object({ name: CouponName, amount: Amount }, { additionalProperties: false })
export type CreateCouponBody = Static<typeof CreateCouponBody>

export const ClaimCouponBody = Type.Object({ user_id: UserId, coupon_name: CouponName }, { additionalProperties: false })
export type ClaimCouponBody = Static<typeof ClaimCouponBody>

export const CouponNameParams = Type.Object({ name: CouponName })
export type CouponNameParams = Static<typeof CouponNameParams>

export const FlashCoupon = Type.Object({
  name: CouponName,
  amount: Amount,
  remaining_amount: Type.Integer({ minimum: 0, description: 'Stock left; never negative' }),
  claimed_by: Type.Array(UserId, { description: 'Users who claimed it, in claim order' })
})
export type FlashCoupon = Static<typeof FlashCoupon>

/** A coupon without its claimants, as the operators' list shows it. */
export const CouponSummary = Type.Object({
  name: CouponName,
  amount: Amount,
  remaining_amount: Type.Integer({ minimum: 0, description: 'Stock left; never negative' }),
  created_at: Type.String({ format: 'date-time' })
})
export type CouponSummary = Static<typeof CouponSummary>

export const Claimed = Type.Object({
  user_id: UserId,
  coupon_name: CouponName
}, { description: 'The claim is recorded' })
export type Claimed = Static<typeof Claimed>

/** Why a claim was refused with 409, sent as `code` in the error body. */
export const ClaimRefusal = Type.Union([Type.Literal('ALREADY_CLAIMED'), Type.Literal('SOLD_OUT')])
export type ClaimRefusal = Static<typeof ClaimRefusal>

// What the store (direct mode) and the consumer's replies (event-driven mode) answer. A dependency
// failure is not an outcome: it is thrown (FLASH_SALE_* error codes) and becomes a 503.
export type CreateOutcome = { status: 'created', coupon: FlashCoupon } | { status: 'exists' }
export type ClaimOutcome = { status: 'claimed' } | { status: 'already-claimed' } | { status: 'sold-out' } | { status: 'not-found' }
export type GetOutcome = { status: 'found', coupon: FlashCoupon } | { status: 'not-found' }

/** The three operations, as the routes see them; implemented by direct mode and by Kafka request/reply. */
export interface FlashSale {
  create: (body: CreateCouponBody) => Promise<CreateOutcome>
  claim: (body: ClaimCouponBody) => Promise<ClaimOutcome>
  get: (name: string) => Promise<GetOutcome>
}

export const REQUEST_KINDS = ['create', 'claim', 'get'] as const
export type RequestKind = typeof REQUEST_KINDS[number]
