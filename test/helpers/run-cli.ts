// Runs one of the CLIs (src/cli/<name>.ts) as a child process through tsx, as `npm run cli:<name>` does. Async
// on purpose: the server it talks to usually lives in the test process, so a spawnSync would block the event
// loop that has to answer it. Killed after `timeoutMs`.
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export function runCli(name: string, args: string[], timeoutMs = 240_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli', `${name}.ts`), ...args], { cwd: root })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => (stderr += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) => child.once('close', (status) => (clearTimeout(timer), resolve({ status, stdout, stderr }))))
}
