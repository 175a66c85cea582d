// Loaded with --import into the service by bench/timeline.ts (never in production): timestamps of the points a
// scoring request passes on the event loop, taken by wrapping public functions from outside, so the source under
// test is the source that ships. CLOCK_MONOTONIC (process.hrtime), which the bench process reads too, so the
// client's send and receive line up with the server's marks. Written to TIMELINE_OUT at exit.
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import { isMainThread, Worker } from 'node:worker_threads'
import { ConversationEncoder } from '../src/conversation/encode.ts'
import { WorkerEngine } from '../src/engine/engine-client.ts'
import { Batcher } from '../src/scheduler/batcher.ts'
import { ScoringService } from '../src/scoring/service.ts'

export type Mark = [label: string, ms: number, value?: number]
export const now = () => Number(process.hrtime.bigint()) / 1e6

const out = process.env.TIMELINE_OUT
if (isMainThread && out) {
  const marks: Mark[] = []
  const mark = (label: string, value?: number) => void marks.push(value === undefined ? [label, now()] : [label, now(), value])
  process.on('exit', () => writeFileSync(out, JSON.stringify(marks)))

  /** Marks `before` when proto[name] is called and `after` (if any) when it returns (or its promise settles). */
  const wrap = (proto: object, name: string, before: string, after?: string) => {
    const p = proto as Record<string, (...a: unknown[]) => unknown>
    const fn = p[name]!
    p[name] = function (this: unknown, ...args: unknown[]) {
      mark(before)
      const r = fn.apply(this, args)
      if (after === undefined) return r
      if (r instanceof Promise) return r.finally(() => mark(after))
      mark(after)
      return r
    }
  }
  const createServer = http.createServer
  http.createServer = ((...args: unknown[]) => {
    const i = args.findIndex((a) => typeof a === 'function')
    if (i >= 0) {
      const handler = args[i] as (req: http.IncomingMessage, res: http.ServerResponse) => void
      args[i] = (req: http.IncomingMessage, res: http.ServerResponse) => {
        mark('request')
        handler(req, res)
      }
    }
    return (createServer as (...a: unknown[]) => http.Server)(...args)
  }) as typeof http.createServer
  wrap(ScoringService.prototype, 'score', 'score', 'scored')
  wrap(ConversationEncoder.prototype, 'turnsBatch', 'tokenize', 'tokenized')
  wrap(Batcher.prototype, 'submit', 'submit', 'submit-settled')
  wrap(WorkerEngine.prototype, 'runReward', 'post', 'engine-settled')
  // not when end() returns: by then the client has often read the answer and sent its next request
  wrap(http.ServerResponse.prototype, 'end', 'end')
  // the engine's answer arriving on the event loop; its inferenceMs is the worker's session.run
  const emit = Worker.prototype.emit
  Worker.prototype.emit = function (this: Worker, type: string | symbol, ...args: unknown[]) {
    const msg = args[0] as { result?: { scores?: unknown; inferenceMs?: number } } | undefined
    if (type === 'message' && msg?.result?.scores !== undefined) mark('reply', msg.result.inferenceMs)
    return emit.call(this, type, ...args)
  }
}
