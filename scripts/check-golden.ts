// Parity of a running server with the PyTorch model that a model version was exported from: every scored case of
// the version's golden.json (text, image, video; written by the exporter / import-hf from the PyTorch model) is
// sent to POST /v1/score and compared with its PyTorch score. Prints a JSON report; exits 1 past the tolerance:
// golden.json's atol_score (1e-4 for float32 exports) plus rtol_score x |score| (float16 exports, whose reference
// is the PyTorch float32 model).
// Usage: npm run check:golden -- MODEL_VERSION_DIR [SERVER_URL=http://127.0.0.1:8080] [ATOL=golden.json atol_score]
//   (API_KEY in the environment is sent as a Bearer token.)
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

interface Case { id: string; kind: string; messages: unknown; score: number }

export async function checkGolden(dir: string, url: string, atol?: number) {
  const golden = JSON.parse(await readFile(path.join(dir, 'golden.json'), 'utf8')) as { atol_score: number; rtol_score?: number; cases: Case[] }
  const manifest = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as { name: string; version: number }
  const tol = atol ?? golden.atol_score
  const rtol = atol === undefined ? (golden.rtol_score ?? 0) : 0
  const cases = golden.cases.filter((c) => ['text', 'image', 'video'].includes(c.kind))
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (process.env.API_KEY) headers.authorization = `Bearer ${process.env.API_KEY}`
  const diffs: Array<{ id: string; kind: string; diff: number; over: number }> = []
  for (let i = 0; i < cases.length; i += 8) {
    const chunk = cases.slice(i, i + 8)
    const body = { model: `${manifest.name}/${manifest.version}`, items: chunk.map((c) => ({ messages: c.messages })) }
    const r = await fetch(new URL('/v1/score', url), { method: 'POST', headers, body: JSON.stringify(body) })
    if (r.status !== 200) throw new Error(`POST /v1/score: ${r.status} ${(await r.text()).slice(0, 500)}`)
    const scores = ((await r.json()) as { scores: number[] }).scores
    chunk.forEach((c, j) => {
      const diff = Math.abs(scores[j]! - c.score)
      diffs.push({ id: c.id, kind: c.kind, diff, over: diff - tol - rtol * Math.abs(c.score) })
    })
  }
  const worst = diffs.reduce((a, b) => (b.diff > a.diff ? b : a), { id: '', kind: '', diff: 0, over: 0 })
  const byKind = Object.fromEntries(['text', 'image', 'video'].map((k) => [k, diffs.filter((d) => d.kind === k).length]))
  const ok = diffs.length > 0 && diffs.every((d) => d.over <= 0)
  return { model: `${manifest.name}/${manifest.version}`, cases: byKind, atol: tol, rtol, max_abs_diff: worst.diff, worst: worst.id, ok }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dir, url = 'http://127.0.0.1:8080', atol] = process.argv.slice(2)
  if (!dir) {
    console.error('usage: npm run check:golden -- MODEL_VERSION_DIR [SERVER_URL] [ATOL]')
    process.exit(2)
  }
  const report = await checkGolden(dir, url, atol === undefined ? undefined : Number(atol))
  console.log(JSON.stringify(report, null, 2))
  process.exit(report.ok ? 0 : 1)
}
