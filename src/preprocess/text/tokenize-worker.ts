// worker_threads entry of tokenize-pool.ts: the same tokenizer as the main thread's, built from the same file.
import { parentPort, workerData } from 'node:worker_threads'
import { readFileSync } from 'node:fs'
import { HfTextTokenizer } from './tokenize.ts'
import type { TokenizerWorkerInit } from './tokenize-pool.ts'

const init = workerData as TokenizerWorkerInit
const tok = new HfTextTokenizer(JSON.parse(readFileSync(init.file, 'utf8')), init.control, { wordSplit: init.wordSplit })

parentPort!.on('message', (msg: { id: number; texts: string[] }) => {
  try {
    const all = msg.texts.map((t) => tok.encode(t))
    const lengths = Int32Array.from(all, (a) => a.length)
    const flat = new Int32Array(lengths.reduce((a, b) => a + b, 0))
    let at = 0
    for (const a of all) {
      flat.set(a, at)
      at += a.length
    }
    parentPort!.postMessage({ id: msg.id, ok: true, flat, lengths }, [flat.buffer, lengths.buffer])
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, ok: false, message: (err as Error).message })
  }
})
