// Decider: deciding on a worker thread gives what PartitionState.decide gives, and hands the state
// back usable.
import t from 'tap'
import { Decider } from '../../src/aggregator/decider.js'
import { PartitionState } from '../../src/aggregator/partition-state.js'
import { packCode, unpackCode } from '../../src/shared/code-packing.js'
import { Sfc32 } from '../../src/gen/random.js'
import { randomCode } from '../helpers/random-code.js'

function fill (state: PartitionState, seed: number): void {
  const rng = new Sfc32(seed)
  const pool = Array.from({ length: 5000 }, () => randomCode(rng))
  for (let i = 0; i < 20_000; i++) {
    const { hi, lo } = packCode(pool[rng.below(pool.length)])
    state.add(hi, lo, rng.below(3))
  }
}

const codes = ({ pairs, count }: { pairs: Uint32Array, count: number }): string[] =>
  Array.from({ length: count }, (_, i) => unpackCode(pairs[2 * i], pairs[2 * i + 1]))

t.test('decides on its thread what the state decides itself, and gives the state back', async (t) => {
  const decider = new Decider()
  t.teardown(async () => { await decider.close() })
  const here = new PartitionState(16)
  const there = new PartitionState(16)
  fill(here, 1)
  fill(there, 1)
  const expected = codes(here.decide(2))
  t.ok(expected.length > 100, `${expected.length} codes in two files or more`)
  const reply = await decider.decide(there, 2)
  t.same(codes(reply), expected)
  t.ok(reply.ms >= 0, 'it says how long it took')
  t.equal(there.length, 20_000, 'the state is back')
  t.same(codes(there.decide(3)), codes(here.decide(3)), 'and can be decided again')
  there.reset(10)
  there.add(1 << 24, 1, 0)
  t.equal(there.length, 1, 'and reused')
})

t.test('fails the decision in progress, retriably, when it is closed', async (t) => {
  const decider = new Decider()
  const state = new PartitionState(16)
  fill(state, 2)
  const decision = t.rejects(decider.decide(state, 2), { code: 'AGGREGATOR_CLOSING', retriable: true })
  await decider.close()
  await decision
  await decider.close()
  t.pass('closing twice is harmless')
})
