// The worker thread of a Decider: decides shared partition states, one at a time, off the
// aggregator's main thread.
import { parentPort } from 'node:worker_threads'
import { decideWords } from './decide-words.js'
import type { DecideRequest, DecideReply } from './decider.js'

const port = parentPort
if (port === null) throw new Error('decide-worker runs as a worker thread of a Decider')
port.on('message', ({ buffer, length, minFiles }: DecideRequest) => {
  const started = performance.now()
  const decision = decideWords(buffer, length, minFiles)
  const reply: DecideReply = { ...decision, buffer, ms: performance.now() - started }
  port.postMessage(reply, [buffer, decision.pairs.buffer as ArrayBuffer])
})
