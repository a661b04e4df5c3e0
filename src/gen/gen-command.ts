// `coupons gen --out DIR --scale S --seed N [--extra N] [--level L]`
import { parseArgs } from 'node:util'
import { progressBars } from '../shared/progress-bar.js'
import { generateCoupons } from './generate-coupons.js'

export async function genCommand (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string', default: './data' },
      scale: { type: 'string', default: '0.001' },
      seed: { type: 'string', default: '1' },
      extra: { type: 'string', default: '24' },
      level: { type: 'string', default: '6' }
    }
  })
  const bars = progressBars('lines')
  const started = performance.now()
  try {
    const key = await generateCoupons({
      outDir: values.out,
      scale: Number(values.scale),
      seed: Number(values.seed),
      extra: Number(values.extra),
      level: Number(values.level),
      onProgress: bars.update
    })
    bars.stop()
    const lines = Object.values(key.files).reduce((sum, file) => sum + file.lines, 0)
    const seconds = (performance.now() - started) / 1000
    console.log(`wrote ${Object.keys(key.files).join(', ')} and answers.json to ${values.out}: ` +
      `${lines} lines in ${seconds.toFixed(1)} s, ${key.valid.length} valid codes, ${key.decoys.length} decoys`)
  } finally {
    bars.stop()
  }
}
