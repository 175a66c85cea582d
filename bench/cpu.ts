// CPU time from /proc (Linux): what a 2-core host runs short of at saturation, and unlike latency it does not
// depend on what else runs. Shared by the bench scripts.
import { readdirSync, readFileSync } from 'node:fs'

const TICK_MS = 1000 / 100 // USER_HZ on Linux

/** utime + stime of one /proc stat line, in ms (fields after the parenthesised command name: utime is 14, stime 15). */
function statMs(path: string): number {
  const stat = readFileSync(path, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * TICK_MS
}

/** CPU milliseconds the process has used so far (all threads). */
export function cpuMs(pid: number): number {
  return statMs(`/proc/${pid}/stat`)
}

/** CPU milliseconds so far of a process's main thread (the event loop: HTTP, JSON, tokenization, batching) and of
 *  all its other threads together (engine worker and ONNX Runtime's pool, tokenizer worker, V8's GC helpers).
 *  A thread that ended since the last call drops out of `others`: read both before and after a segment and
 *  compare only while the thread set is stable (a running server's is). */
export function threadCpuMs(pid: number): { main: number; others: number } {
  let others = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    if (Number(tid) === pid) continue
    try {
      others += statMs(`/proc/${pid}/task/${tid}/stat`)
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return { main: statMs(`/proc/${pid}/task/${pid}/stat`), others }
}

/** This process's CPU ms so far (all threads: the raw engine's ORT pool, or the HTTP load generator). */
export function selfCpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
