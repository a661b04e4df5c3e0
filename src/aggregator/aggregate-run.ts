// One aggregation: the current segment of every configured file, partition by partition, into the
// staging set, then the swap, then freeing Kafka of the records no current segment needs
// (DESIGN section 5). Peak memory is two partitions' packed states, sized from the manifests: one
// being read from Kafka while the other is decided on a worker thread.
import type { Admin, Kafka } from 'kafkajs'
import type { Config } from '../shared/config.js'
import { CouponsError } from '../shared/errors.js'
import type { Logger } from '../shared/logger.js'
import type { SegmentManifest } from '../shared/segments.js'
import { Decider } from './decider.js'
import { PartitionState } from './partition-state.js'
import { readPartition, type SegmentRead } from './read-partition.js'
import { publishRunPhase } from './run-phases.js'
import type { SegmentUsed, SwapOutcome, ValidSetSwap } from './valid-set-swap.js'

export interface AggregateRunOptions {
  config: Config
  kafka: Kafka
  admin: Admin
  swap: ValidSetSwap
  logger: Logger
  runId: string
  /** the current segment of every configured file */
  segments: SegmentManifest[]
  /** coupons.segments offset of the newest of those manifests: the set's freshness */
  segmentsOffset: bigint
  signal?: AbortSignal
}

export interface RunStats {
  runId: string
  outcome: SwapOutcome
  files: Array<{ file: string, segmentId: string, runId: string, codesRead: number }>
  codesRead: number
  validCount: number
  stateBytes: number
  /** read, decide and stage summed over the partitions; decide (on its own thread) overlaps the next read */
  ms: { read: number, decide: number, stage: number, swap: number, cleanup: number, total: number }
}

export async function aggregateRun (options: AggregateRunOptions): Promise<RunStats> {
  const { config, kafka, admin, swap, logger, runId, segments, segmentsOffset, signal } = options
  const log = logger.child({ runId })
  const started = performance.now()
  const ms = { read: 0, decide: 0, stage: 0, swap: 0, cleanup: 0, total: 0 }
  const fileIndex = new Map(config.couponFiles.map((file, i) => [file, i]))
  for (const manifest of segments) {
    if (manifest.partitions.length !== config.kafkaPartitions) {
      throw new CouponsError('AGGREGATOR_PARTITIONS_MISMATCH',
        `${manifest.file}: segment ${manifest.segmentId} has ${manifest.partitions.length} partitions but KAFKA_PARTITIONS is ${config.kafkaPartitions}`)
    }
  }
  const readsOf = (partition: number): SegmentRead[] => segments.map((manifest) => ({
    file: manifest.file,
    fileIndex: fileIndex.get(manifest.file) as number,
    topic: manifest.topic,
    segmentId: manifest.segmentId,
    recordFormat: manifest.recordFormat,
    range: manifest.partitions.find((range) => range.partition === partition) ?? { partition, firstOffset: null, lastOffset: null, records: 0, codes: 0 }
  }))
  const expectedCodes = (partition: number): number => readsOf(partition).reduce((sum, read) => sum + read.range.codes, 0)
  let capacity = 1
  for (let p = 0; p < config.kafkaPartitions; p++) capacity = Math.max(capacity, expectedCodes(p))

  log.info({ files: segments.map(({ file, segmentId, runId: from, codes }) => ({ file, segmentId, runId: from, codes })), capacity }, 'aggregation started')
  // Two states: partition p is decided on the Decider's thread while p+1 is read into the other.
  const states = [new PartitionState(capacity), new PartitionState(capacity)]
  const decider = new Decider()
  const codesRead = new Map(segments.map((manifest) => [manifest.file, 0]))
  let validCount = 0
  /** the decision and staging of the partition read last, running while the next one is read */
  let deciding: Promise<void> | null = null
  const decideAndStage = async (partition: number, state: PartitionState): Promise<void> => {
    const valid = await decider.decide(state, config.minFiles)
    ms.decide += valid.ms
    const at = performance.now()
    await swap.stage(runId, valid)
    ms.stage += performance.now() - at
    validCount += valid.count
    log.debug({ partition, codes: state.length, valid: valid.count }, 'partition decided')
    publishRunPhase({ phase: 'staging', runId, partition, validCount: valid.count })
  }
  try {
    await swap.clearStaging(runId)
    for (let partition = 0; partition < config.kafkaPartitions; partition++) {
      signal?.throwIfAborted()
      const state = states[partition % 2]
      state.reset(expectedCodes(partition))
      const at = performance.now()
      const counts = await readPartition({
        kafka,
        admin,
        logger: log,
        runId,
        partition,
        partitions: config.kafkaPartitions,
        reads: readsOf(partition),
        state,
        signal
      })
      for (const { file, codes } of counts) codesRead.set(file, (codesRead.get(file) ?? 0) + codes)
      ms.read += performance.now() - at
      // The other state is free again once its partition is decided and staged.
      await deciding
      deciding = decideAndStage(partition, state)
      // Awaited above or in the finally block; a failure meanwhile must not count as unhandled.
      deciding.catch(() => {})
    }
    await deciding
  } finally {
    await deciding?.catch(() => {})
    await decider.close()
  }
  signal?.throwIfAborted()

  let at = performance.now()
  const used: SegmentUsed[] = segments.map(({ file, segmentId, runId: from }) => ({ file, segmentId, runId: from }))
  const outcome = await swap.swap({
    runId,
    validCount,
    segments: used,
    segmentsOffset,
    stagingMs: ms.stage
  })
  ms.swap = performance.now() - at

  at = performance.now()
  if (outcome.state === 'applied') await deleteUnneededRecords(admin, segments, log)
  ms.cleanup = performance.now() - at
  ms.total = performance.now() - started
  for (const key of Object.keys(ms) as Array<keyof typeof ms>) ms[key] = Math.round(ms[key])

  const stats: RunStats = {
    runId,
    outcome,
    files: used.map((segment) => ({ ...segment, codesRead: codesRead.get(segment.file) ?? 0 })),
    codesRead: [...codesRead.values()].reduce((a, b) => a + b, 0),
    validCount,
    stateBytes: states[0].bytes + states[1].bytes,
    ms
  }
  const { runId: _runId, ...fields } = stats // the logger is already bound to the run id
  log.info(fields, outcome.state === 'applied' ? 'aggregation applied' : 'aggregation superseded by a newer run')
  return stats
}

/**
 * Records before each current segment's first offset belong to older segments (or to attempts
 * that never completed): no future aggregation reads them. A failure here costs disk, not
 * correctness, so it is logged and the next swap tries again.
 */
async function deleteUnneededRecords (admin: Admin, segments: SegmentManifest[], logger: Logger): Promise<void> {
  for (const manifest of segments) {
    const partitions = manifest.partitions
      .filter((range) => range.firstOffset !== null)
      .map((range) => ({ partition: range.partition, offset: range.firstOffset as string }))
    if (partitions.length === 0) continue
    try {
      await admin.deleteTopicRecords({ topic: manifest.topic, partitions })
    } catch (err) {
      logger.warn({ err, topic: manifest.topic }, 'deleting records older than the current segment failed; the next swap retries')
    }
  }
}
