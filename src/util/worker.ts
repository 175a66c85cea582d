// Starting a worker_threads entry that is a .ts source file (the engine worker, the media transform workers).
import { Worker } from 'node:worker_threads'

/** Starts the worker. Source runs through tsx: a loader passed with --import in execArgv is not active for
 *  a worker's entry module on Node 20, so a tiny bootstrap registers tsx inside the worker first. */
export function spawnWorker(entry: URL, init: unknown): Worker {
  // Compiled (dist/, `npm run build`): callers name the source file; its compiled sibling is what exists.
  if (import.meta.url.endsWith('.js')) entry = new URL(entry.href.replace(/\.ts$/, '.js'))
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData: init })
  const tsxApi = import.meta.resolve('tsx/esm/api')
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(boot, { eval: true, workerData: init })
}
