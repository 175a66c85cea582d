// clients/typescript as another project uses it: its declarations match its JSDoc (checkJs passes), `npm pack`
// gives an installable tarball, and a fresh project that `npm install`s it imports it by name, type-checks against
// its index.d.ts (the wrong calls below must be type errors) and calls the real service (default model, real HTTP).
import t from 'tap'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../../src/app.ts'
import { QUERY_TEMPLATE_NAMES } from '../../src/rlhf/query-template.ts'
import { testConfig } from '../helpers/build-app.ts'
import type { z } from 'zod'
import type { MessageSchema } from '../../src/http/schemas/common.ts'
import type { GetRewardRequestSchema } from '../../src/http/schemas/get-reward.ts'
import type { RankRequestSchema } from '../../src/http/schemas/score.ts'
import type { GetRewardRequest as ClientGetReward, Message as ClientMessage, RankRequest as ClientRank } from '../../clients/typescript/index.js'

// Compile time (tsc --noEmit in scripts/test.sh): the package's own types and the service's request schemas
// agree: a message is the same shape both ways; every request the client types allow, the service's types allow.
type Is<T extends true> = T
type Extends<A, B> = [A] extends [B] ? true : false
export type TypesAgree = [
  Is<Extends<z.input<typeof MessageSchema>, ClientMessage>>,
  Is<Extends<ClientMessage, z.input<typeof MessageSchema>>>,
  Is<Extends<ClientGetReward, z.input<typeof GetRewardRequestSchema>>>,
  Is<Extends<NonNullable<ClientRank['group']>, NonNullable<z.input<typeof RankRequestSchema>['group']>>>,
  Is<Extends<NonNullable<ClientRank['length_control']>, NonNullable<z.input<typeof RankRequestSchema>['length_control']>>>,
]

const run = promisify(execFile)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const pkgDir = path.join(root, 'clients/typescript')
const tsc = path.join(root, 'node_modules/typescript/bin/tsc')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ts-client-pkg-'))
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
// npm and the consumer without tap's loaders (a plain `node` run) and with a private cache.
const env = { ...process.env, NODE_OPTIONS: '', npm_config_cache: path.join(dir, 'npm-cache'), npm_config_update_notifier: 'false' }

t.test('index.d.ts is what tsc makes of index.js (checkJs, strict)', async (t) => {
  const out = path.join(dir, 'decl')
  await run(process.execPath, [tsc, '-p', path.join(pkgDir, 'tsconfig.json'), '--declarationDir', out], { env })
  t.equal(fs.readFileSync(path.join(out, 'index.d.ts'), 'utf8'), fs.readFileSync(path.join(pkgDir, 'index.d.ts'), 'utf8'), 'run `npm run types` in clients/typescript')
})

t.test("the package's template names are the service's", async (t) => {
  const dts = fs.readFileSync(path.join(pkgDir, 'index.d.ts'), 'utf8')
  const union = /export type QueryTemplate = ([^;]+);/.exec(dts)?.[1] ?? ''
  t.same([...union.matchAll(/"([^"]+)"/g)].map((m) => m[1]).sort(), [...QUERY_TEMPLATE_NAMES].sort())
})

t.test('npm pack → npm install in another project → import by name, typed, against the real service', async (t) => {
  const app = buildApp(testConfig({ MODELS_DIR: path.join(root, 'models'), EXECUTION_PROVIDERS: 'cpu' }))
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())

  const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: pkgDir, env })
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  t.same(info!.files.map((f) => f.path).sort(), ['README.md', 'index.d.ts', 'index.js', 'package.json'], 'tarball contents')

  const proj = path.join(dir, 'consumer')
  fs.mkdirSync(proj)
  fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(dir, info!.filename)], { cwd: proj, env })
  const installed = JSON.parse(fs.readFileSync(path.join(proj, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  t.match(installed.dependencies['@reward-server/client'], /\.tgz$/, 'installed from the tarball')

  // Type-checked as a TypeScript project would (NodeNext resolution through package.json `exports`).
  fs.writeFileSync(
    path.join(proj, 'consumer.ts'),
    `import { RewardClient, RewardServiceError, type GetRewardResponse, type Message } from '@reward-server/client'
const client = new RewardClient({ baseUrl: 'http://127.0.0.1:1', retry: { maxAttempts: 1 } })
const tool: Message[] = [{ role: 'user', content: 'x' }, { role: 'assistant', content: null, tool_calls: [{ function: { name: 'f' } }] }, { role: 'tool', content: '1' }]
export const ok: Promise<GetRewardResponse> = client.getReward({ messages: [tool], template: 'gemma', options: { clip: { min: -5, max: 5 } } })
export const status = (e: RewardServiceError): number => e.status
// @ts-expect-error query is a list of strings
client.getReward({ query: 'one string' })
// @ts-expect-error no such template
client.getReward({ query: [], template: 'vicuna' })
// @ts-expect-error roles are system/user/assistant/tool
export const bad: Message = { role: 'robot', content: '' }
export const adv: Promise<number[] | undefined> = client.rank({ prompt: 'x', candidates: ['a', 'b'], group: { size: 2, on: 'normalized' } }).then((r) => r.advantages?.dr_grpo)
// @ts-expect-error a group size or group ids, not both
client.getReward({ messages: [tool], group: { size: 1, ids: ['a'] } })
// @ts-expect-error /v1/rank's advantages are on raw or normalized scores (shaped is /get_reward's)
client.rank({ prompt: 'x', candidates: ['a'], group: { size: 1, on: 'shaped' } })
`,
  )
  fs.writeFileSync(
    path.join(proj, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, lib: ['ES2022', 'DOM'], types: [] }, files: ['consumer.ts'] }),
  )
  const typed = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: proj, env }).then(
    () => 'ok',
    (err: { stdout: string }) => err.stdout,
  )
  t.equal(typed, 'ok', 'the consumer type-checks, and each wrong call is a type error')

  // Run with plain node: calls the service through the installed package.
  fs.writeFileSync(
    path.join(proj, 'main.mjs'),
    `import { RewardClient, RewardServiceError } from '@reward-server/client'
const client = new RewardClient({ baseUrl: process.argv[2] })
const query = ['<|im_start|>user\\nWhat is 2+2?<|im_end|>\\n<|im_start|>assistant\\n4<|im_end|>\\n']
const reward = await client.getReward({ query, prompts: [], labels: [] })
const score = await client.score({ items: [{ messages: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4' }] }] })
const models = await client.models()
let refused = null
try { await client.getReward({ query: [], messages: [] }) } catch (e) { refused = e instanceof RewardServiceError ? [e.status, e.code] : String(e) }
console.log(JSON.stringify({ reward, score, models, refused }))
`,
  )
  const { stdout } = await run(process.execPath, ['main.mjs', base], { cwd: proj, env })
  const got = JSON.parse(stdout) as { reward: { rewards: number[]; scores: number[] }; score: { scores: number[] }; models: { object?: string }; refused: unknown }
  const direct = await app.inject({
    method: 'POST',
    url: '/get_reward',
    payload: { query: ['<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n'], prompts: [], labels: [] },
  })
  t.equal(got.reward.scores.length, 1)
  t.ok(Number.isFinite(got.reward.scores[0]), 'a finite reward')
  t.ok(Math.abs(got.reward.scores[0]! - direct.json().scores[0]) < 1e-6, 'the same reward as a direct request')
  const directScore = await app.inject({
    method: 'POST',
    url: '/v1/score',
    payload: { items: [{ messages: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4' }] }] },
  })
  t.ok(Math.abs(got.score.scores[0]! - directScore.json().scores[0]) < 1e-6, '/v1/score: the same score as a direct request')
  t.equal(got.models.object, 'list')
  t.same(got.refused, [422, 'invalid_request'], 'a refusal comes back as RewardServiceError')
})
