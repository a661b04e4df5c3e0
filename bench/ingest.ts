// `npm run bench:ingest -- --scale 0.1 [--file couponbase2.gz] [--partitions 8] [--format words|packed|lines]`: produces ONE
// generated file to a fresh topic prefix and prints its speed, then in the same run on the same
// file the floor: gunzip + CodeScanner only, no Kafka. Data is generated once under
// data/bench-<scale>/ (data/scale-1/ for --scale 1) and reused; the topics are deleted at the end.
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { deleteTopics } from '../scripts/lib/cleanup.js'
import { produceFile } from '../src/ingest/produce-file.js'
import { loadConfig } from '../src/shared/config.js'
import { createKafka } from '../src/shared/kafka.js'
import { createLogger } from '../src/shared/logger.js'
import { RECORD_FORMATS, newRunId, type RecordFormat } from '../src/shared/segments.js'
import { benchData } from './lib/bench-data.js'
import { scanFloorInChild } from './lib/scan-floor.js'

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '0.1' },
    file: { type: 'string', default: 'couponbase2.gz' },
    partitions: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    format: { type: 'string', default: 'words' }
  }
})
const scale = Number(values.scale)
const { dir } = await benchData(scale, Number(values.seed))
const file = values.file
const format = values.format as RecordFormat
if (!RECORD_FORMATS.includes(format)) throw new Error(`--format is one of ${RECORD_FORMATS.join(', ')}`)
const path = join(dir, file)

const prefix = `bench-ingest-${Date.now()}.`
const config = loadConfig({ ...process.env, COUPON_DATA_DIR: dir, KAFKA_TOPIC_PREFIX: prefix, KAFKA_PARTITIONS: values.partitions, LOG_LEVEL: 'error' })
const logger = createLogger('error', 'bench')
const kafka = createKafka(config, logger, 'bench-ingest')

interface Figures { seconds: number, compressed: number, uncompressed: number, codes: number, peakRssMb: number }

function print (label: string, f: Figures): void {
  const mb = 2 ** 20
  console.log(`${label.padEnd(22)} ${f.seconds.toFixed(2).padStart(7)} s  ` +
    `${(f.compressed / mb / f.seconds).toFixed(1).padStart(6)} MB/s gz  ` +
    `${(f.uncompressed / mb / f.seconds).toFixed(1).padStart(6)} MB/s raw  ` +
    `${(f.codes / f.seconds / 1e6).toFixed(2).padStart(6)} M codes/s  ` +
    `peak RSS ${f.peakRssMb.toFixed(0)} MB`)
}

try {
  // The floor first, in a process of its own (its memory must not count against the producer's);
  // it also warms the page cache for the produce pass.
  const floor: Figures = await scanFloorInChild(path)
  const started = performance.now()
  const cpuBefore = process.cpuUsage()
  const manifest = await produceFile({ config, kafka, logger, file, runId: newRunId(), recordFormat: format })
  const cpu = process.cpuUsage(cpuBefore)
  const produced: Figures = {
    seconds: (performance.now() - started) / 1000,
    compressed: manifest.fileBytes,
    uncompressed: floor.uncompressed,
    codes: manifest.codes,
    // This process only produced: its peak is the producer's (plus Node's and tsx's baseline).
    peakRssMb: process.resourceUsage().maxRSS / 1024
  }
  console.log(`\n${file} at scale ${scale}, ${format} records: ${(produced.compressed / 2 ** 20).toFixed(1)} MB gz, ` +
    `${(floor.uncompressed / 2 ** 20).toFixed(1)} MB raw, ${produced.codes.toLocaleString('en')} codes, ${config.kafkaPartitions} partitions`)
  print('produce to Kafka', produced)
  // Every thread of this process (zlib's included), which wall time on a busy machine hides.
  console.log(`produce CPU: ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s (user ${(cpu.user / 1e6).toFixed(2)}, system ${(cpu.system / 1e6).toFixed(2)})`)
  print('floor (gunzip + scan)', floor)
  console.log(`Kafka costs ${(produced.seconds / floor.seconds).toFixed(2)}x the floor`)
} finally {
  await deleteTopics(kafka, prefix)
}
