// Random codes for tests, from a seeded generator: every run draws the same codes, so a failure
// can be replayed.
import { Sfc32 } from '../../src/gen/random.js'
import { CODE_ALPHABET, MAX_CODE_LENGTH, MIN_CODE_LENGTH } from '../../src/shared/code-rule.js'

const TEST_SEED = 0x5eed

/** A seeded generator for a test's own draws; randomCode() without one uses a shared seeded one. */
export function testRandom (seed = TEST_SEED): Sfc32 {
  return new Sfc32(seed)
}

const shared = testRandom()

/** A random candidate code: 8 to 10 ASCII letters and digits, either case. */
export function randomCode (rng: Sfc32 = shared): string {
  const length = MIN_CODE_LENGTH + rng.below(MAX_CODE_LENGTH - MIN_CODE_LENGTH + 1)
  let code = ''
  for (let i = 0; i < length; i++) code += CODE_ALPHABET[rng.below(CODE_ALPHABET.length)]
  return code
}
