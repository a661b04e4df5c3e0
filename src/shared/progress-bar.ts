// Progress bars for the CLI tools (gen, ingest), shown only when a human watches a terminal.
import { MultiBar, Presets, type SingleBar } from 'cli-progress'

export interface ProgressBars {
  update: (name: string, value: number, total: number) => void
  stop: () => void
}

export function progressBars (unit: string, stream: NodeJS.WriteStream = process.stderr): ProgressBars {
  if (!stream.isTTY) return { update: () => {}, stop: () => {} }
  const multi = new MultiBar({
    stream,
    format: `{name} [{bar}] {percentage}% | {value}/{total} ${unit} | {duration_formatted}`,
    hideCursor: true,
    clearOnComplete: false
  }, Presets.shades_classic)
  const bars = new Map<string, SingleBar>()
  return {
    update (name, value, total) {
      let bar = bars.get(name)
      if (bar === undefined) {
        bar = multi.create(total, 0, { name: name.padEnd(16) })
        bars.set(name, bar)
      }
      bar.setTotal(total)
      bar.update(value)
    },
    stop () { multi.stop() }
  }
}
