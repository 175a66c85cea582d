// Starts src/server.ts as its own process (as in production) on a free port and waits for readiness (model
// loaded and warmed). Shared by the bench scripts.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** A free TCP port on 127.0.0.1 (the OS picks it; the tiny race before the child binds it is acceptable here). */
async function freePort(): Promise<number> {
  const srv = net.createServer().listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as net.AddressInfo).port
  srv.close()
  return port
}

/** `dir`: the checkout whose src/server.ts runs (default this one; a before/after bench passes an older tree).
 *  `nodeArgs`: more node flags (bench/timeline.ts preloads its marks with one). */
export async function startServer(env: Record<string, string>, dir = root, nodeArgs: string[] = []): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', ...nodeArgs, path.join(dir, 'src/server.ts')], {
    cwd: dir,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    // ORT reports every execution-provider fallback on stderr; the server logs the choice itself.
    stdio: ['ignore', 'inherit', 'ignore'],
  })
  const base = `http://127.0.0.1:${port}`
  for (let i = 0; !(await fetch(`${base}/readyz`).then((r) => r.ok, () => false)); i++) {
    if (i > 1200 || child.exitCode !== null) throw new Error('service did not become ready')
    await new Promise((r) => setTimeout(r, 100))
  }
  return { child, base }
}
