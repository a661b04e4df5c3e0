// How the aggregator's consumer group splits the work (issue 14). Partition p of every data topic
// goes to the same member (co-partitioned: a code is in partition hash(code) mod P of each file's
// topic, so one member sees every file's copies of its codes and decides them alone), members
// taking partitions in turn. The one partition of coupons.segments goes to one member, the
// coordinator, which plans the runs. Members are ordered by id, so every member computes the same.
import { AssignerProtocol, type PartitionAssigner } from 'kafkajs'

export const CO_PARTITIONED_ASSIGNER = 'CouponsCoPartitioned'

export type Assignment = Record<string, number[]>

/**
 * Each member's topic -> partitions. A data topic with fewer partitions than another simply has no
 * partition p for the higher p (KAFKA_PARTITIONS grew and it was not re-produced yet).
 */
export function assignCoPartitioned (memberIds: readonly string[], segmentsTopic: string, dataTopics: ReadonlyMap<string, number>): Map<string, Assignment> {
  const members = [...memberIds].sort()
  const assignments = new Map<string, Assignment>(members.map((id) => [id, {}]))
  if (members.length === 0) return assignments
  const width = Math.max(0, ...dataTopics.values())
  for (let p = 0; p < width; p++) {
    const assignment = assignments.get(members[p % members.length]) as Assignment
    for (const [topic, partitions] of dataTopics) {
      if (p < partitions) (assignment[topic] ??= []).push(p)
    }
  }
  // The coordinator is a member that decides the fewest partitions (the first of those when P does
  // not divide evenly), because it also replays coupons.segments and plans.
  const coordinator = members[(width % members.length === 0 ? 0 : width % members.length) % members.length]
  ;(assignments.get(coordinator) as Assignment)[segmentsTopic] = [0]
  return assignments
}

/** The kafkajs assigner of the aggregator group; `segmentsTopic` is coupons.segments (with its prefix). */
export function coPartitionedAssigner (segmentsTopic: string): PartitionAssigner {
  return ({ cluster }) => ({
    name: CO_PARTITIONED_ASSIGNER,
    version: 0,
    async assign ({ members, topics }) {
      const dataTopics = new Map(topics.filter((topic) => topic !== segmentsTopic)
        .map((topic) => [topic, cluster.findTopicPartitionMetadata(topic).length]))
      const assignments = assignCoPartitioned(members.map(({ memberId }) => memberId), segmentsTopic, dataTopics)
      return [...assignments].map(([memberId, assignment]) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment, userData: Buffer.alloc(0) })
      }))
    },
    protocol ({ topics }) {
      return { name: CO_PARTITIONED_ASSIGNER, metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) }
    }
  })
}
