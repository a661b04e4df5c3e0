// Reads samples out of a Prometheus text exposition, so that tests compare values with what they
// did (not merely "contains text"), through the same text a scraper reads.

export interface Sample { name: string, labels: Record<string, string>, value: number }

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export function parseSamples (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = LINE.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c))
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

/**
 * The value of the one sample named `name` whose labels include `labels`; undefined when there is
 * none. More than one is a mistake of the test (it must name enough labels), so it throws.
 */
export function sampleValue (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = parseSamples(text).filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return found[0]?.value
}
