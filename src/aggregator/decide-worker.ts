// The worker thread of a Decider: decides shared partition states, one at a time, off the
// aggregator's main thread.
import { parentPort } from 'node:worker_threads'
import { decideWords } from './partition-state.js'
import type { DecideRequest, DecideReply } from './decider.js'

const port = parentPort
if (port === null) throw new Error('decide-worker runs as a worker thread of a Decider')
port.on('message', ({ buffer, length, minFiles }: DecideRequest) => {
  const started = performance.now()
  const { pairs, count } = decideWords(buffer, length, minFiles)
  const reply: DecideReply = { buffer, pairs, count, ms: performance.now() - started }
  port.postMessage(reply, [buffer, pairs.buffer as ArrayBuffer])
})
