import t from 'tap'
import { assignCoPartitioned, type Assignment } from '../../src/aggregator/co-partition-assigner.js'

const SEGMENTS = 'p.coupons.segments'
const TOPICS = ['p.couponbase1.gz', 'p.couponbase2.gz', 'p.couponbase3.gz']

function dataTopics (...counts: number[]): Map<string, number> {
  return new Map(counts.map((count, i) => [TOPICS[i], count]))
}

/** topic -> partition -> the members it was given to */
function owners (assignments: Map<string, Assignment>): Map<string, Map<number, string[]>> {
  const byTopic = new Map<string, Map<number, string[]>>()
  for (const [member, assignment] of assignments) {
    for (const [topic, partitions] of Object.entries(assignment)) {
      const byPartition = byTopic.get(topic) ?? new Map<number, string[]>()
      byTopic.set(topic, byPartition)
      for (const p of partitions) byPartition.set(p, [...(byPartition.get(p) ?? []), member])
    }
  }
  return byTopic
}

function coordinators (assignments: Map<string, Assignment>): string[] {
  return [...assignments].filter(([, assignment]) => assignment[SEGMENTS] !== undefined).map(([member]) => member)
}

t.test('gives every partition of every data topic to exactly one member', async (t) => {
  const assignments = assignCoPartitioned(['m1', 'm2', 'm3'], SEGMENTS, dataTopics(7, 7, 7))
  const byTopic = owners(assignments)
  for (const topic of TOPICS) {
    const partitions = byTopic.get(topic) ?? new Map()
    t.same([...partitions.keys()].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6], `every partition of ${topic} is given`)
    t.ok([...partitions.values()].every((members) => members.length === 1), `no partition of ${topic} is given twice`)
  }
})

t.test('gives partition p of every data topic to the same member', async (t) => {
  const assignments = assignCoPartitioned(['m1', 'm2', 'm3'], SEGMENTS, dataTopics(7, 7, 7))
  for (const [member, assignment] of assignments) {
    const [first, ...others] = TOPICS.map((topic) => assignment[topic] ?? [])
    t.ok(first.length > 0, `${member} has partitions`)
    for (const partitions of others) t.same(partitions, first, `${member} has the same partitions of every data topic`)
  }
})

t.test('members, ordered by id, take the partitions in turn', async (t) => {
  const assignments = assignCoPartitioned(['m2', 'm3', 'm1'], SEGMENTS, dataTopics(7, 7))
  t.same(assignments.get('m1')?.[TOPICS[0]], [0, 3, 6])
  t.same(assignments.get('m2')?.[TOPICS[0]], [1, 4])
  t.same(assignments.get('m3')?.[TOPICS[0]], [2, 5])
})

t.test('exactly one member coordinates, given partition 0 of coupons.segments, and it is one that decides the fewest partitions', async (t) => {
  for (const [members, width] of [[1, 4], [2, 4], [3, 4], [3, 7], [4, 6], [5, 3]]) {
    const ids = Array.from({ length: members }, (_, i) => `m${i}`)
    const assignments = assignCoPartitioned(ids, SEGMENTS, dataTopics(width, width))
    const [coordinator, ...others] = coordinators(assignments)
    t.equal(others.length, 0, `${members} members, ${width} partitions: one coordinator`)
    t.same(assignments.get(coordinator)?.[SEGMENTS], [0], 'it is given coupons.segments partition 0')
    const decides = (id: string): number => assignments.get(id)?.[TOPICS[0]]?.length ?? 0
    const fewest = Math.min(...ids.map(decides))
    t.equal(decides(coordinator), fewest, `the coordinator decides ${decides(coordinator)}, the fewest any member decides`)
  }
})

t.test('computes the same assignment whatever the order of the members', async (t) => {
  const topics = dataTopics(8, 8, 8)
  const expected = assignCoPartitioned(['a', 'b', 'c'], SEGMENTS, topics)
  for (const order of [['c', 'b', 'a'], ['b', 'a', 'c'], ['a', 'c', 'b']]) {
    const assignments = assignCoPartitioned(order, SEGMENTS, topics)
    t.same(Object.fromEntries(assignments), Object.fromEntries(expected), order.join(','))
  }
})

t.test('a data topic with fewer partitions has no partition p beyond its count; the others keep theirs', async (t) => {
  const assignments = assignCoPartitioned(['m1', 'm2'], SEGMENTS, dataTopics(6, 4, 6))
  t.same(assignments.get('m1'), { [TOPICS[0]]: [0, 2, 4], [TOPICS[1]]: [0, 2], [TOPICS[2]]: [0, 2, 4], [SEGMENTS]: [0] })
  t.same(assignments.get('m2'), { [TOPICS[0]]: [1, 3, 5], [TOPICS[1]]: [1, 3], [TOPICS[2]]: [1, 3, 5] })
})

t.test('more members than partitions: the extra members get nothing to decide, and one of them coordinates', async (t) => {
  const assignments = assignCoPartitioned(['m1', 'm2', 'm3'], SEGMENTS, dataTopics(2, 2))
  t.same(assignments.get('m1'), { [TOPICS[0]]: [0], [TOPICS[1]]: [0] })
  t.same(assignments.get('m2'), { [TOPICS[0]]: [1], [TOPICS[1]]: [1] })
  t.same(assignments.get('m3'), { [SEGMENTS]: [0] })
})

t.test('no data topics: the one member coordinates and decides nothing', async (t) => {
  t.same(Object.fromEntries(assignCoPartitioned(['m1'], SEGMENTS, new Map())), { m1: { [SEGMENTS]: [0] } })
})

t.test('zero members: an empty assignment, and no coordinator', async (t) => {
  const assignments = assignCoPartitioned([], SEGMENTS, dataTopics(4, 4))
  t.equal(assignments.size, 0)
})
