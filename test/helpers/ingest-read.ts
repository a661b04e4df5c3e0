// Reads topics back for the ingest tests: every record up to the current end of each partition,
// and the decoded records of the segments topic.
import { gunzipSync } from 'node:zlib'
import { readFileSync } from 'node:fs'
import type { Kafka } from 'kafkajs'
import { packCode, partitionOf, unpackCode } from '../../src/shared/code-packing.js'
import { PACKED_CODE_BYTES, decodeSegmentsRecord, type SegmentManifest, type SegmentsRecord } from '../../src/shared/segments.js'
import { findCodes } from './find-codes.js'
import { uniqueName } from './test-env.js'

export interface ReadRecord {
  partition: number
  offset: string
  value: Buffer
  headers: Record<string, string>
}

/** Every record of the topic, up to the end each partition has now; [] when the topic does not exist. */
export async function readTopic (kafka: Kafka, topic: string): Promise<ReadRecord[]> {
  const admin = kafka.admin()
  await admin.connect()
  let ends: Map<number, bigint>
  try {
    if (!(await admin.listTopics()).includes(topic)) return []
    const offsets = await admin.fetchTopicOffsets(topic)
    ends = new Map(offsets.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high)]))
  } finally {
    await admin.disconnect()
  }
  if (ends.size === 0) return []
  const consumer = kafka.consumer({ groupId: uniqueName('ingest-read') })
  await consumer.connect()
  const records: ReadRecord[] = []
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`reading ${topic} timed out`)), 60_000)
      const remaining = new Set(ends.keys())
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          const headers: Record<string, string> = {}
          for (const [key, value] of Object.entries(message.headers ?? {})) headers[key] = String(value)
          records.push({ partition, offset: message.offset, value: message.value ?? Buffer.alloc(0), headers })
          if (BigInt(message.offset) + 1n >= ends.get(partition)!) remaining.delete(partition)
          if (remaining.size === 0) { clearTimeout(timer); resolve() }
        }
      }).catch(reject)
    })
  } finally {
    await consumer.disconnect()
  }
  return records
}

export async function readSegments (kafka: Kafka, topic: string): Promise<SegmentsRecord[]> {
  return (await readTopic(kafka, topic)).map((record) => decodeSegmentsRecord(record.value))
}

export async function readManifests (kafka: Kafka, topic: string): Promise<SegmentManifest[]> {
  return (await readSegments(kafka, topic)).filter((record): record is SegmentManifest => record.type === 'segment')
}

/** The candidate codes of a gz file per partition, sorted, computed the slow and obvious way. */
export function expectedCodes (path: string, partitions: number): { lines: number, perPartition: string[][] } {
  const text = gunzipSync(readFileSync(path)).toString('latin1')
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  const perPartition: string[][] = Array.from({ length: partitions }, () => [])
  for (const line of lines) {
    for (const code of findCodes(line)) {
      const { hi, lo } = packCode(code)
      perPartition[partitionOf(hi, lo, partitions)].push(code)
    }
  }
  for (const codes of perPartition) codes.sort()
  return { lines: lines.length, perPartition }
}

/** The codes of one record in the manifest's record format (absent: `lines`). */
export function codesOfRecord (value: Buffer, recordFormat = 'lines'): string[] {
  if (recordFormat === 'lines') return value.toString('latin1').split('\n')
  if (recordFormat !== 'packed' && recordFormat !== 'words') throw new Error(`unknown record format ${recordFormat}`)
  if (value.length % PACKED_CODE_BYTES !== 0) throw new Error(`a ${recordFormat} record of ${value.length} bytes`)
  const codes: string[] = []
  for (let i = 0; i < value.length; i += PACKED_CODE_BYTES) {
    if (recordFormat === 'packed') {
      codes.push(unpackCode(value.readUInt32BE(i), value.readUInt32BE(i + 4)))
      continue
    }
    // words: one little-endian uint64, hi (30 bits) | lo (30 bits) | 4 zero bits, spelled out here
    // bit by bit rather than through code-packing's helpers, so that this decodes independently.
    const word = value.readBigUInt64LE(i)
    if ((word & 0xfn) !== 0n) throw new Error(`a words record whose word at ${i} has file bits set`)
    codes.push(unpackCode(Number(word >> 34n), Number((word >> 4n) & 0x3fffffffn)))
  }
  return codes
}

/** The codes of one segment's records per partition, sorted. */
export function codesOfSegment (records: ReadRecord[], manifest: Pick<SegmentManifest, 'segmentId' | 'recordFormat'>, partitions: number): string[][] {
  const perPartition: string[][] = Array.from({ length: partitions }, () => [])
  for (const record of records) {
    if (record.headers.segment !== manifest.segmentId) continue
    perPartition[record.partition].push(...codesOfRecord(record.value, manifest.recordFormat))
  }
  for (const codes of perPartition) codes.sort()
  return perPartition
}
