// /get_reward on the real default model (real tokenizer and ONNX engine): policy queries in each template,
// built from real dialogues, score exactly as their messages do under the RM's own template.
import t from 'tap'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildApp } from '../../src/app.ts'
import type { Message } from '../../src/conversation/types.ts'
import { readDataset } from '../../src/cli/datasets.ts'
import { testConfig } from '../helpers/build-app.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const HH = path.resolve(root, '../shared/fixtures/preference/hh-rlhf-harmless-base-test.jsonl.gz')
const TOL = 1e-4

const render: Record<string, (ms: Message[]) => string> = {
  chatml: (ms) => ms.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '<|endoftext|>',
  qwen2: (ms) =>
    '<|endoftext|><|endoftext|><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
    ms.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>`).join('\n'),
  llama3: (ms) =>
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>' +
    ms.map((m) => `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content}<|eot_id|>`).join(''),
  internlm2: (ms) => '<s>' + ms.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '</s>',
  ixc: (ms) => '<s>' + ms.map((m) => `[UNUSED_TOKEN_146]${m.role}\n${m.content}[UNUSED_TOKEN_145]\n`).join('') + '</s>',
}

t.test('every template round-trips to the same score as the messages', async (t) => {
  const app = buildApp(testConfig({ MODELS_DIR: path.join(root, 'models'), EXECUTION_PROVIDERS: 'cpu' }))
  await app.ready()
  t.teardown(() => app.close())
  const convs: Message[][] = []
  for await (const row of readDataset(HH, { format: 'hh-rlhf' })) {
    if ('skip' in row) continue
    convs.push(row.chosen)
    if (convs.length >= 6) break
  }
  const ref = (await app.inject({ method: 'POST', url: '/v1/score', payload: { items: convs.map((messages) => ({ messages })) } })).json()
  for (const [name, fn] of Object.entries(render)) {
    // prompts as OpenRLHF sends them: the query up to the response (the template's assistant header included)
    const queries = convs.map(fn)
    const prompts = convs.map((c, i) => {
      const answer = c[c.length - 1]!.content as string
      return queries[i]!.slice(0, queries[i]!.lastIndexOf(answer))
    })
    const res = await app.inject({ method: 'POST', url: `/get_reward?template=${name}`, payload: { query: queries, prompts, labels: null } })
    t.equal(res.statusCode, 200, name)
    const body = res.json()
    body.rewards.forEach((r: number, i: number) => t.ok(Math.abs(r - ref.scores[i]) < TOL, `${name} #${i}: ${r} vs ${ref.scores[i]}`))
    t.same(body.extra_logs.truncated, ref.results.map((x: { truncated: boolean }) => (x.truncated ? 1 : 0)))
  }
  // One sample per request (OpenRLHF's current traffic) gives the same reward as inside a batch.
  const single = await Promise.all(
    convs.map((c) => {
      const q = render.chatml!(c)
      const prompt = q.slice(0, q.lastIndexOf(c[c.length - 1]!.content as string))
      return app.inject({ method: 'POST', url: '/get_reward', payload: { query: [q], prompts: [prompt], labels: [null] } })
    }),
  )
  single.forEach((r, i) => t.ok(Math.abs(r.json().rewards[0] - ref.scores[i]) < TOL, `single #${i}`))
  // Plain split by the prompt, as OpenRLHF sends it without --apply_chat_template.
  const plain = convs[0]!
  const prompt = plain.slice(0, -1).map((m) => `${m.role === 'user' ? 'Human' : 'Assistant'}: ${m.content}`).join('\n\n') + '\n\nAssistant:'
  const answer = plain[plain.length - 1]!.content as string
  const res = await app.inject({ method: 'POST', url: '/get_reward?template=plain', payload: { query: [`${prompt} ${answer}`], prompts: [prompt], labels: null } })
  const expect = (await app.inject({
    method: 'POST',
    url: '/v1/score',
    payload: { items: [{ messages: [{ role: 'user', content: prompt }, { role: 'assistant', content: answer }] }] },
  })).json().scores[0]
  t.ok(Math.abs(res.json().rewards[0] - expect) < TOL, 'plain')
})
