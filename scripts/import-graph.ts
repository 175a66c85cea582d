// The import graph of src/: how many files one /v1/score request's route module pulls in, and which top-level
// folders of src/ import each other (cycles). Run: npm run deps:graph [-- --json]
//
// Edges are every relative import/export-from, dynamic import('./x.ts') and worker entry
// (new URL('./x.ts', import.meta.url)) between files of src/; type-only imports count too (a type is a
// dependency of the reader). node_modules and files outside src/ (the client package) are external edges. A "folder" is a directory directly under src/; a file
// directly in src/ (app.ts, config.ts, ...) is a folder of its own, named without the extension.
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const SRC = path.join(REPO_ROOT, 'src')
/** The module that handles POST /v1/score. */
export const SCORE_ROUTE = 'http/routes/score.ts'

export interface ImportEdge {
  from: string // src-relative file
  to: string // src-relative file, or the package name for a bare specifier
  typeOnly: boolean
  external: boolean
}

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return listTs(p)
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : []
  })
}

/** Every src-relative .ts file under src/. */
export function sourceFiles(src = SRC): string[] {
  return listTs(src).map((f) => path.relative(src, f).split(path.sep).join('/')).sort()
}

function packageName(spec: string): string {
  const parts = spec.split('/')
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!
}

/** The imports of one file (static, re-exports, dynamic import() with a literal, worker URLs). */
export function fileImports(file: string, src = SRC): ImportEdge[] {
  const text = readFileSync(path.join(src, file), 'utf8')
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true)
  const out: ImportEdge[] = []
  const add = (spec: string, typeOnly: boolean) => {
    if (spec.startsWith('node:')) return
    if (spec.startsWith('.')) {
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec))
      // Out of src/ (the TypeScript client package, clients/typescript): external, named by its repo path.
      if (to.startsWith('../')) out.push({ from: file, to: to.slice(3), typeOnly, external: true })
      else out.push({ from: file, to, typeOnly, external: false })
    } else out.push({ from: file, to: packageName(spec), typeOnly, external: true })
  }
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const c = node.importClause
      const named = c?.namedBindings && ts.isNamedImports(c.namedBindings) ? c.namedBindings.elements : undefined
      const typeOnly = !!c && (c.isTypeOnly || (!c.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly)))
      add(node.moduleSpecifier.text, typeOnly)
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const a = node.arguments[0]
      if (a && ts.isStringLiteral(a)) add(a.text, false)
    } else if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'URL') {
      const [a, b] = node.arguments ?? []
      // a worker entry module; a data file read beside the module (a .wasm, a .conf) is not an import
      if (a && ts.isStringLiteral(a) && a.text.startsWith('.') && a.text.endsWith('.ts') && b && b.getText(sf) === 'import.meta.url') add(a.text, false)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true)
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return out
}

export function importEdges(src = SRC): ImportEdge[] {
  const files = new Set(sourceFiles(src))
  const edges = sourceFiles(src).flatMap((f) => fileImports(f, src))
  for (const e of edges) if (!e.external && !files.has(e.to)) throw new Error(`${e.from} imports ${e.to}, which does not exist`)
  return edges
}

/** The files reachable from `entry` through imports within src/ (entry included), sorted. */
export function closure(entry: string, edges: readonly ImportEdge[], opts: { runtimeOnly?: boolean } = {}): string[] {
  const next = new Map<string, string[]>()
  for (const e of edges) {
    if (e.external || (opts.runtimeOnly && e.typeOnly)) continue
    next.set(e.from, [...(next.get(e.from) ?? []), e.to])
  }
  const seen = new Set([entry])
  const stack = [entry]
  while (stack.length) for (const n of next.get(stack.pop()!) ?? []) if (!seen.has(n)) seen.add(n), stack.push(n)
  return [...seen].sort()
}

export function folderOf(file: string): string {
  const i = file.indexOf('/')
  return i < 0 ? file.replace(/\.ts$/, '') : file.slice(0, i)
}

/** folder -> folders it imports (other than itself), with one example edge each. */
export function folderGraph(edges: readonly ImportEdge[]): Map<string, Map<string, string>> {
  const g = new Map<string, Map<string, string>>()
  for (const e of edges) {
    if (e.external) continue
    const a = folderOf(e.from)
    const b = folderOf(e.to)
    if (!g.has(a)) g.set(a, new Map())
    if (!g.has(b)) g.set(b, new Map())
    if (a !== b && !g.get(a)!.has(b)) g.get(a)!.set(b, `${e.from} -> ${e.to}`)
  }
  return g
}

/** Strongly connected components with more than one folder (Tarjan), each sorted. */
export function folderCycles(g: Map<string, Map<string, string>>): string[][] {
  let index = 0
  const idx = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const sccs: string[][] = []
  const strong = (v: string) => {
    idx.set(v, index)
    low.set(v, index++)
    stack.push(v)
    onStack.add(v)
    for (const w of g.get(v)?.keys() ?? []) {
      if (!idx.has(w)) {
        strong(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!))
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        c.push(w)
      } while (w !== v)
      if (c.length > 1) sccs.push(c.sort())
    }
  }
  for (const v of [...g.keys()].sort()) if (!idx.has(v)) strong(v)
  return sccs.sort((a, b) => a[0]!.localeCompare(b[0]!))
}

/** Pairs of folders that import each other directly. */
export function mutualPairs(g: Map<string, Map<string, string>>): string[] {
  const out: string[] = []
  for (const [a, to] of g) for (const b of to.keys()) if (a < b && g.get(b)?.has(a)) out.push(`${a}<->${b}`)
  return out.sort()
}

export function report(src = SRC) {
  const edges = importEdges(src)
  const g = folderGraph(edges)
  const all = closure(SCORE_ROUTE, edges)
  const runtime = closure(SCORE_ROUTE, edges, { runtimeOnly: true })
  return {
    files: sourceFiles(src).length,
    scoreRoute: { entry: SCORE_ROUTE, files: all.length, runtimeFiles: runtime.length, list: all },
    folderCycles: folderCycles(g),
    mutualFolderPairs: mutualPairs(g),
    folderEdges: Object.fromEntries([...g].sort(([a], [b]) => a.localeCompare(b)).map(([a, to]) => [a, [...to.keys()].sort()])),
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0) // piped into head
    throw err
  })
  const r = report()
  if (process.argv.includes('--json')) console.log(JSON.stringify(r, null, 2))
  else {
    console.log(`src/ files: ${r.files}`)
    console.log(`/v1/score route (${r.scoreRoute.entry}): ${r.scoreRoute.files} files in its import closure (${r.scoreRoute.runtimeFiles} without type-only imports)`)
    for (const f of r.scoreRoute.list) console.log(`  ${f}`)
    console.log(`folder-level cycles (SCCs): ${r.folderCycles.length}`)
    for (const c of r.folderCycles) console.log(`  {${c.join(', ')}}`)
    console.log(`folders importing each other directly: ${r.mutualFolderPairs.length ? r.mutualFolderPairs.join(', ') : 'none'}`)
    console.log('folder edges:')
    for (const [a, to] of Object.entries(r.folderEdges)) console.log(`  ${a} -> ${to.join(', ') || '(none)'}`)
  }
}
