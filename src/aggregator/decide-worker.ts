// The worker thread of a Decider: decides shared partition states, one at a time, off the
// aggregator's main thread.
import { parentPort } from 'node:worker_threads'
import { decideWords } from './decide-words.js'
import { transferList, type DecideRequest, type DecideReply } from './decider.js'

const port = parentPort
if (port === null) throw new Error('decide-worker runs as a worker thread of a Decider')
port.on('message', ({ words, minFiles }: DecideRequest) => {
  const started = performance.now()
  const decision = decideWords(words, minFiles)
  const reply: DecideReply = { ...decision, words, ms: performance.now() - started }
  port.postMessage(reply, [...transferList(words), decision.pairs.buffer as ArrayBuffer])
})
