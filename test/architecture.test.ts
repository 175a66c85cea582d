// The layering of src/, checked on the real import graph (scripts/import-graph.ts): folders import one way only,
// Fastify lives in src/http (plus the composition root src/app.ts), each native dependency has one import site,
// and every Fastify concern is a named plugin.
//
// The allowed folder graph (an edge A -> B: files of A may import files of B). Read top to bottom:
//
//   server, cli ─> app ─> http ─> scoring ─> models ─> conversation ─> preprocess ─> engine
//                          │         │          │            ▲              │           │
//                          ├─> rlhf ─┼──────────┼────────────┘              │           │
//                          ├─> config ─> rlhf, preprocess (media config)    │           │
//                          │         └─> scheduler ─> engine                │           │
//   shared leaves, importable from anywhere above them: errors, util, metrics
//
// The TypeScript client is its own package (clients/typescript, no server code); cli uses it.
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { closure, folderCycles, folderGraph, folderOf, importEdges, report, SCORE_ROUTE, SRC, sourceFiles } from '../scripts/import-graph.ts'

const ALLOWED: Record<string, readonly string[]> = {
  errors: [],
  util: [],
  metrics: [],
  engine: ['errors', 'util'],
  preprocess: ['engine', 'errors', 'util'],
  scheduler: ['engine', 'errors', 'metrics'],
  conversation: ['preprocess', 'engine', 'errors'],
  rlhf: ['conversation', 'errors'],
  models: ['conversation', 'preprocess', 'scheduler', 'engine', 'errors'],
  scoring: ['models', 'conversation', 'preprocess', 'scheduler', 'engine', 'metrics', 'errors'],
  config: ['rlhf', 'preprocess'],
  http: ['scoring', 'models', 'rlhf', 'conversation', 'preprocess', 'scheduler', 'engine', 'metrics', 'config', 'errors', 'util'],
  app: ['http', 'scoring', 'models', 'scheduler', 'preprocess', 'engine', 'metrics', 'config', 'errors'],
  server: ['app', 'http', 'config'],
  cli: ['app', 'config', 'conversation', 'rlhf', 'preprocess'],
}

const edges = importEdges()
const graph = folderGraph(edges)

t.test('no two folders of src/ import each other, directly or through others', async (t) => {
  t.same(folderCycles(graph), [], 'folder-level strongly connected components')
})

t.test('every folder imports only the folders below it', async (t) => {
  for (const [from, to] of graph) {
    t.ok(ALLOWED[from], `folder ${from} has a place in the allowed graph`)
    for (const [dep, example] of to) t.ok(ALLOWED[from]?.includes(dep), `${from} -> ${dep} is allowed (${example})`)
  }
})

t.test('the engine knows nothing of conversations; preprocess nothing of the web', async (t) => {
  const reach = (f: string) => closure(f, edges)
  for (const f of sourceFiles().filter((f) => f.startsWith('engine/'))) {
    t.same(reach(f).filter((x) => !/^(engine|errors|util)[/.]/.test(x)), [], `${f} stays in engine/errors/util`)
  }
})

const FASTIFY = /^(fastify|fastify-plugin|@fastify\/.*)$/
t.test('Fastify is imported only under src/http/ (and by the composition root src/app.ts)', async (t) => {
  const outside = edges.filter((e) => e.external && FASTIFY.test(e.to) && !e.from.startsWith('http/') && e.from !== 'app.ts')
  // The CLI's in-process mode hands an app to fetch: a type, no Fastify code.
  t.same(outside.filter((e) => !(e.from === 'cli/connect.ts' && e.typeOnly)).map((e) => `${e.from} -> ${e.to}`), [])
})

t.test('src/ reaches outside itself only for the client package, which imports nothing', async (t) => {
  const outside = edges.filter((e) => e.external && e.to.includes('/') && !e.to.startsWith('@'))
  t.ok(outside.length > 0, 'the CLIs use the client package')
  t.same([...new Set(outside.map((e) => e.to))], ['clients/typescript/index.js'])
  t.same([...new Set(outside.map((e) => folderOf(e.from)))], ['cli'], 'only the CLIs')
  // The package stands alone: no imports at all (node: built-ins included), so no server code can leak in.
  const pkg = readFileSync(path.join(SRC, '../clients/typescript/index.js'), 'utf8')
  t.notMatch(pkg, /^\s*(import|export)\b[^\n]*\bfrom\s/m, 'no import/export-from in clients/typescript/index.js')
  t.notMatch(pkg, /\bimport\s*\(|\brequire\s*\(/, 'no dynamic import or require')
})

t.test('one file per native dependency, one for prom-client', async (t) => {
  const sites = (pkg: string) => [...new Set(edges.filter((e) => e.external && e.to === pkg).map((e) => e.from))]
  t.same(sites('onnxruntime-node'), ['engine/onnx.ts'])
  t.same(sites('sharp'), ['preprocess/image/sharp.ts'])
  t.same(sites('prom-client'), ['metrics/metrics.ts'])
})

t.test('every Fastify concern under src/http/plugins is a named fastify-plugin with its dependencies', async (t) => {
  const plugins = sourceFiles().filter((f) => f.startsWith('http/plugins/'))
  t.ok(plugins.length >= 7, `${plugins.length} plugins`)
  const names = new Set<string>()
  for (const f of plugins) {
    const mod = (await import(path.join(SRC, f))) as { default?: Record<symbol, { name?: string; dependencies?: string[] }> }
    const meta = mod.default?.[Symbol.for('plugin-meta')]
    t.ok(meta?.name, `${f} is wrapped by fastify-plugin with a name`)
    t.ok(Array.isArray(meta?.dependencies), `${f} declares its dependencies`)
    if (meta?.name) names.add(meta.name)
  }
  for (const f of plugins) {
    const mod = (await import(path.join(SRC, f))) as { default?: Record<symbol, { dependencies?: string[] }> }
    for (const d of mod.default?.[Symbol.for('plugin-meta')]?.dependencies ?? []) t.ok(names.has(d), `${f}: dependency ${d} is one of the plugins`)
  }
  for (const f of sourceFiles()) {
    t.notMatch(readFileSync(path.join(SRC, f), 'utf8'), /skip-override/, `${f} has no skip-override hack`)
  }
})

t.test('the /v1/score route module and its import closure', async (t) => {
  const r = report()
  t.comment(`${r.scoreRoute.files} files (${r.scoreRoute.runtimeFiles} at run time) reachable from ${SCORE_ROUTE}`)
  t.notOk(r.scoreRoute.list.includes('app.ts'), 'the route does not reach back to the app')
})
