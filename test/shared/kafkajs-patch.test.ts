// What patches/kafkajs+2.2.4.patch changes in how KafkaJS encodes a produce request (issue 15):
// the CRC32C of a record batch computed natively, and large record values appended to the request
// by reference instead of copied level by level, then written to the socket as they are. Both must leave the bytes on the wire exactly as
// Kafka expects them: here a produce request is decoded back with KafkaJS's own decoders and its
// batch CRCs recomputed with KafkaJS's JavaScript CRC32C. (Every integration test that produces to
// the real broker checks it too: a wrong CRC is refused with CORRUPT_MESSAGE.)
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import t from 'tap'

const require = createRequire(import.meta.url)
const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C') as (buffer: Buffer) => number
const jsCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C') as (buffer: Buffer) => number
const createRequest = require('kafkajs/src/protocol/request') as (options: unknown) => Promise<{ size: () => number, buffer: Buffer, buffers: () => Buffer[] }>
const produceRequest = require('kafkajs/src/protocol/requests/produce/v3/request') as (options: unknown) => unknown
const Decoder = require('kafkajs/src/protocol/decoder') as new (buffer: Buffer) => KafkaDecoder
const decodeRecordBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder') as (decoder: KafkaDecoder) => Promise<{ records: Array<{ value: Buffer | null, headers: Record<string, Buffer> }> }>
const Long = require('kafkajs/src/utils/long') as { fromInt: (value: number) => unknown }

interface KafkaDecoder {
  readInt16: () => number
  readInt32: () => number
  readString: () => string | null
  readBytes: (length: number) => Buffer
}

const unsigned = (value: number): number => value >>> 0

t.test('the CRC32C of a batch is the one KafkaJS computed in JavaScript', async (t) => {
  t.equal(crc32C(Buffer.from('123456789')), 0xe3069283, 'the standard check value')
  for (const length of [0, 1, 7, 64, 4095, 65_536 + 3, 1 << 20]) {
    const buffer = randomBytes(length)
    t.equal(crc32C(buffer), unsigned(jsCrc32C(buffer)), `${length} bytes`)
  }
})

t.test('a produce request of large and small values decodes back byte for byte, with valid batch CRCs', async (t) => {
  // Values above and below the 4,096 bytes from which the patched encoder appends by reference.
  const values = [randomBytes(65_536), randomBytes(100), randomBytes(4096), randomBytes(4095), randomBytes(300_000)]
  const partitions = [0, 1, 2]
  const request = produceRequest({
    acks: -1,
    timeout: 30_000,
    producerId: Long.fromInt(42),
    producerEpoch: 1,
    topicData: [{
      topic: 'codes',
      partitions: partitions.map((partition) => ({
        partition,
        firstSequence: 0,
        messages: values.map((value, i) => ({ value: i === partition ? Buffer.concat([value, Buffer.from([partition])]) : value, headers: { segment: `s${partition}` } }))
      }))
    }]
  })
  const encoded = await createRequest({ correlationId: 7, clientId: 'test', request })
  // What the connection writes: the request's buffers, in order, the large values among them as they are.
  const buffers = encoded.buffers()
  t.ok(values.every((value) => value.length < 4096 || buffers.some((buffer) => buffer.buffer === value.buffer && buffer.byteOffset === value.byteOffset)), 'every value of 4 KiB or more is written from its own memory, not a copy')
  const bytes = Buffer.concat(buffers)
  t.equal(encoded.size(), bytes.length)
  t.same(encoded.buffer, bytes, 'joined, they are the request')

  const decoder = new Decoder(bytes)
  t.equal(decoder.readInt32(), bytes.length - 4, 'the size prefix')
  t.equal(decoder.readInt16(), 0, 'Produce')
  t.equal(decoder.readInt16(), 3, 'version 3')
  t.equal(decoder.readInt32(), 7, 'correlation id')
  t.equal(decoder.readString(), 'test')
  t.equal(decoder.readString(), null, 'no transactional id')
  t.equal(decoder.readInt16(), -1, 'acks')
  t.equal(decoder.readInt32(), 30_000, 'timeout')
  t.equal(decoder.readInt32(), 1, 'one topic')
  t.equal(decoder.readString(), 'codes')
  t.equal(decoder.readInt32(), partitions.length)
  for (const partition of partitions) {
    t.equal(decoder.readInt32(), partition)
    const batch = decoder.readBytes(decoder.readInt32())
    // firstOffset (8), length (4), partitionLeaderEpoch (4), magic (1), then the CRC of the rest.
    t.equal(batch.readUInt32BE(17), unsigned(jsCrc32C(batch.subarray(21))), `partition ${partition}: the batch CRC`)
    const { records } = await decodeRecordBatch(new Decoder(batch))
    const expected = values.map((value, i) => i === partition ? Buffer.concat([value, Buffer.from([partition])]) : value)
    t.equal(records.length, expected.length)
    t.ok(records.every((record, i) => record.value?.equals(expected[i]) === true), `partition ${partition}: every value byte for byte`)
    t.ok(records.every((record) => record.headers.segment.toString() === `s${partition}`), `partition ${partition}: the headers`)
  }
})
