// Progress output for long CLI runs on stderr: a redrawn bar on a terminal, a line every few seconds otherwise
// (CI logs and `| tee` would fill with carriage-return garbage).
export interface Progress {
  tick(n?: number): void
  done(): void
}

export function createProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = Date.now()
  let count = 0
  let lastDraw = 0
  const tty = Boolean(stream.isTTY)
  const draw = (final: boolean) => {
    const now = Date.now()
    if (!final && now - lastDraw < (tty ? 200 : 5000)) return
    lastDraw = now
    const secs = (now - started) / 1000
    const rate = secs > 0 ? count / secs : 0
    const frac = total > 0 ? Math.min(1, count / total) : 0
    const eta = rate > 0 && total > count ? `${Math.ceil((total - count) / rate)}s left` : ''
    const width = 30
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.')
    const line = `${label} [${bar}] ${count}/${total} ${(frac * 100).toFixed(1)}% ${rate.toFixed(1)}/s ${eta}`
    stream.write(tty ? `\r${line.padEnd(100)}${final ? '\n' : ''}` : `${line}\n`)
  }
  return {
    tick(n = 1) {
      count += n
      draw(false)
    },
    done() {
      draw(true)
    },
  }
}
