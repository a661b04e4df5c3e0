// Decides partition states on a worker thread, so that the aggregator reads partition p+1 from
// Kafka while partition p is decided (issue 15: the two took turns on one core while the other
// core waited). The state's buffers are transferred to the thread and back, never copied (a
// SharedArrayBuffer would be: V8 sorts a shared typed array in a temporary copy, a second state's
// worth of memory).
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { CouponsError } from '../shared/errors.js'
import type { Decision, StateWords } from './decide-words.js'
import type { PartitionState } from './partition-state.js'

const WORKER_URL = new URL(`./decide-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

export interface DecideRequest {
  words: StateWords
  minFiles: number
}

export interface DecideReply extends Decision {
  /** the state's words, given back */
  words: StateWords
  /** time the thread spent deciding */
  ms: number
}

export class Decider {
  readonly #worker: Worker
  /** the request on the thread (one at a time) */
  #pending: { resolve: (reply: DecideReply) => void, reject: (err: Error) => void } | null = null
  #failed: Error | null = null
  #closed: Promise<void> | null = null

  constructor () {
    this.#worker = new Worker(WORKER_URL)
    this.#worker.on('message', (reply: DecideReply) => {
      const pending = this.#pending
      this.#pending = null
      pending?.resolve(reply)
    })
    this.#worker.on('error', (err) => { this.#fail(err) })
    this.#worker.on('exit', (code) => { this.#fail(new Error(`the decide thread exited (code ${code})`)) })
  }

  /**
   * Decides the state on the thread, like state.decide(minFiles). The state is unusable until the
   * promise resolves (its buffers are on the thread); when deciding fails, it stays so.
   */
  async decide (state: PartitionState, minFiles: number): Promise<DecideReply> {
    if (this.#failed !== null) throw this.#failed
    if (this.#pending !== null) throw new Error('the Decider decides one state at a time')
    const words = state.release()
    const reply = await new Promise<DecideReply>((resolve, reject) => {
      this.#pending = { resolve, reject }
      this.#worker.postMessage({ words, minFiles } satisfies DecideRequest, transferList(words))
    })
    state.restore(reply.words)
    return reply
  }

  #fail (err: Error): void {
    if (this.#closed !== null) return
    this.#failed ??= new CouponsError('AGGREGATOR_DECIDE_FAILED', `deciding a partition failed: ${err.message}`, { cause: err, retriable: true })
    const pending = this.#pending
    this.#pending = null
    pending?.reject(this.#failed)
  }

  /** Stops the thread (a decision in progress is abandoned). Idempotent. */
  async close (): Promise<void> {
    this.#closed ??= this.#worker.terminate().then(() => {}, () => {})
    const pending = this.#pending
    this.#pending = null
    pending?.reject(new CouponsError('AGGREGATOR_CLOSING', 'the decide thread was stopped', { retriable: true }))
    await this.#closed
  }
}

/** The buffers of a state's words: moved to the thread and back, never copied. */
export function transferList (words: StateWords): ArrayBuffer[] {
  return [words.buffer, words.first.buffer as ArrayBuffer, words.next.buffer as ArrayBuffer, words.end.buffer as ArrayBuffer]
}
