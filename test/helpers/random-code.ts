import type { Sfc32 } from '../../src/gen/random.js'

const ALNUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const UNSEEDED: Pick<Sfc32, 'below'> = { below: (n) => Math.floor(Math.random() * n) }

/**
 * A random candidate code: 8 to 10 ASCII letters and digits, either case. Pass a seeded Sfc32 so
 * that a failing test fails the same way again.
 */
export function randomCode (rng: Pick<Sfc32, 'below'> = UNSEEDED): string {
  const length = 8 + rng.below(3)
  let code = ''
  for (let i = 0; i < length; i++) code += ALNUM[rng.below(ALNUM.length)]
  return code
}
