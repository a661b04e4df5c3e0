// PartitionRecords: every code lands in the record of its partition (the shared hash), records
// hold the codes 8 bytes each (`words`, `packed`; or, in the lines format, joined by LF) and are never larger
// than the record size, and full records are handed over only when taken.
import t from 'tap'
import { Sfc32 } from '../../src/gen/random.js'
import { PartitionRecords, RECORD_BYTES, type PackedRecord } from '../../src/ingest/partition-records.js'
import { packCode, partitionOf } from '../../src/shared/code-packing.js'
import { codesOfRecord } from '../helpers/ingest-read.js'
import { randomCode } from '../helpers/random-code.js'

function push (records: PartitionRecords, code: string): void {
  const bytes = Buffer.from(code, 'latin1')
  records.onCode(bytes, 0, bytes.length)
}

function partitionOfCode (code: string, partitions: number): number {
  const { hi, lo } = packCode(code)
  return partitionOf(hi, lo, partitions)
}

function decode (record: PackedRecord): string[] {
  return record.value.toString('latin1').split('\n')
}

// 4 partitions are routed by a mask, 6 by a division: both must be partitionOf.
for (const [format, partitions] of [['words', 4], ['words', 6], ['packed', 4], ['packed', 6]] as const) {
  t.test(`${format === 'words' ? 'by default, ' : ''}writes each code as 8 bytes (${format}) into the record of its partition, of ${partitions}`, async (t) => {
    const rng = new Sfc32(3)
    const codes = Array.from({ length: 3000 }, () => randomCode(rng))
    const records = format === 'words' ? new PartitionRecords(partitions) : new PartitionRecords(partitions, RECORD_BYTES, format)
    t.equal(records.format, format)
    for (const code of codes) push(records, code)
    const all = records.takeAll()
    t.same(all.map((r) => r.partition).sort(), Array.from({ length: partitions }, (_, p) => p), 'one record per partition')
    for (const record of all) {
      const expected = codes.filter((code) => partitionOfCode(code, partitions) === record.partition)
      t.equal(record.value.length, 8 * expected.length, `partition ${record.partition}: 8 bytes a code`)
      t.same(codesOfRecord(record.value, format), expected, `partition ${record.partition}: its codes, in order, unpacked as they were`)
      t.equal(record.codes, expected.length)
    }
  })
}

t.test('a record of 8-byte codes is closed when the next 8 bytes would not fit, and the fullest partition is tracked', async (t) => {
  const records = new PartitionRecords(1, 20)
  for (const code of ['AAAAAAAA', 'BBBBBBBBB', 'CCCCCCCCCC']) push(records, code)
  t.equal(records.fullBytes, 16, 'two codes fill 16 of 20 bytes; the third starts a new record')
  t.equal(records.fullBytesMax, 16)
  const [full] = records.takeFull()
  t.same(codesOfRecord(full.value, 'words'), ['AAAAAAAA', 'BBBBBBBBB'])
  t.equal(records.fullBytesMax, 0, 'taking the full records forgets them')
  t.same(records.takeAll().map((r) => codesOfRecord(r.value, 'words')), [['CCCCCCCCCC']])
})

t.test('in the lines format, routes every code to the record of its partition, codes joined by LF, with their count', async (t) => {
  const rng = new Sfc32(1)
  const partitions = 4
  const codes = Array.from({ length: 2000 }, () => randomCode(rng))
  const records = new PartitionRecords(partitions, RECORD_BYTES, 'lines')
  for (const code of codes) push(records, code)
  t.equal(records.fullBytes, 0, '2000 codes fill no 64 KiB record')
  t.same(records.takeFull(), [], 'so no record is full yet')

  const all = records.takeAll()
  t.same(all.map((r) => r.partition).sort(), [0, 1, 2, 3], 'one record per partition')
  for (const record of all) {
    const expected = codes.filter((code) => partitionOfCode(code, partitions) === record.partition)
    t.same(decode(record), expected, `partition ${record.partition}: its codes, in order`)
    t.equal(record.codes, expected.length)
  }
  t.same(records.takeAll(), [], 'taking all again finds nothing pending')
})

t.test('copies each code out of the chunk it was found in', async (t) => {
  const records = new PartitionRecords(1, RECORD_BYTES, 'lines')
  const chunk = Buffer.from('xxAAAAAAAAyy', 'latin1')
  records.onCode(chunk, 2, 10)
  chunk.fill('Z')
  t.same(records.takeAll().map(decode), [['AAAAAAAA']])
})

t.test('closes a record when the next code would not fit, so no record exceeds the record size', async (t) => {
  // 29 bytes hold three 9-char codes and their two LFs; a fourth code starts the next record.
  const records = new PartitionRecords(1, 29, 'lines')
  const codes = ['AAAAAAAA1', 'AAAAAAAA2', 'AAAAAAAA3', 'AAAAAAAA4', 'AAAAAAAA5']
  for (const code of codes.slice(0, 3)) push(records, code)
  t.equal(records.fullBytes, 0, 'three codes fill the record exactly; it is not closed yet')
  push(records, codes[3])
  t.equal(records.fullBytes, 29)
  push(records, codes[4])
  const full = records.takeFull()
  t.same(full.map(decode), [codes.slice(0, 3)])
  t.same(full.map((r) => r.codes), [3])
  t.equal(records.fullBytes, 0, 'taking the full records forgets them')
  t.same(records.takeAll().map(decode), [codes.slice(3)], 'the pending record holds the rest')
})

t.test('at the default size, records are full at 64 KiB and their bytes are counted until taken', async (t) => {
  const rng = new Sfc32(2)
  const records = new PartitionRecords(2, RECORD_BYTES, 'lines')
  const codes: string[] = []
  while (records.fullBytes === 0) {
    const code = randomCode(rng)
    codes.push(code)
    push(records, code)
  }
  const full = records.takeFull()
  t.equal(full.length, 1)
  const [record] = full
  t.ok(record.value.length <= RECORD_BYTES, `${record.value.length} bytes`)
  t.ok(record.value.length > RECORD_BYTES - 11, 'closed only when the next code (up to 10 chars and an LF) did not fit')
  t.same(decode(record), codes.filter((code) => partitionOfCode(code, 2) === record.partition).slice(0, record.codes))
})
