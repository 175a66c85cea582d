// /get_reward with the fake engine: OpenRLHF's exact payload shapes, query re-rendering with the RM template
// (same score as /v1/score on the equivalent messages), shaping options and their echo, and refusals.
import t from 'tap'
import { buildTestApp } from '../../helpers/build-app.ts'
import { charTokenizer } from '../../helpers/fake-model.ts'

const TOL = 1e-6
const USER = 'What is 2+2?'
const ANSWER = 'The answer is 4.'
const messages = [
  { role: 'user', content: USER },
  { role: 'assistant', content: ANSWER },
]
const QWEN =
  '<|endoftext|><|endoftext|><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
  `<|im_start|>user\n${USER}<|im_end|>\n<|im_start|>assistant\n${ANSWER}<|im_end|><|endoftext|>`
// Generic ChatML policy (e.g. OpenHermes), left padding and EOS as OpenRLHF decodes them.
const CHATML = `<|endoftext|><|im_start|>user\n${USER}<|im_end|>\n<|im_start|>assistant\n${ANSWER}<|im_end|><|endoftext|>`
const LLAMA3 =
  '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>' +
  `<|start_header_id|>user<|end_header_id|>\n\n${USER}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n${ANSWER}<|eot_id|>`
const IXC = `<s>[UNUSED_TOKEN_146]user\n${USER}[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n${ANSWER}[UNUSED_TOKEN_145]\n</s>`
const INTERNLM2 = `<s><|im_start|>user\n${USER}<|im_end|>\n<|im_start|>assistant\n${ANSWER}<|im_end|>\n</s>`
const PLAIN_PROMPT = `Human: ${USER}\n\nAssistant:`
const LOG_KEYS = ['raw_reward', 'response_tokens', 'length_penalty', 'clipped', 'truncated',
  ...['messages', 'plain', 'chatml', 'qwen2', 'llama3', 'internlm2', 'ixc', 'gemma', 'phi3', 'mistral'].map((n) => `template_${n}`)]

// The response's own positions under the RM template: "[UNUSED_TOKEN_146]assistant\n" + answer + "[UNUSED_TOKEN_145]\n".
const responseTokens = charTokenizer.encode(`[UNUSED_TOKEN_146]assistant\n${ANSWER}[UNUSED_TOKEN_145]\n`).length

async function setup(t: { teardown: (fn: () => unknown) => void }, env: Record<string, string> = {}, model = {}) {
  const { app, engine } = await buildTestApp(env, { model })
  t.teardown(() => app.close())
  const post = (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as object })
  const reference = (await post('/v1/score', { items: [{ messages }] })).json().scores[0] as number
  return { app, engine, post, reference }
}

t.test('OpenRLHF single sample: {query, prompts, labels} -> {rewards, scores, extra_logs}', async (t) => {
  const { post, reference } = await setup(t)
  const res = await post('/get_reward', { query: [CHATML], prompts: ['<|im_start|>user\n…'], labels: [null] })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.rewards.length, 1)
  t.ok(Math.abs(body.rewards[0] - reference) < TOL, 'the query scores as its messages under the RM template')
  t.ok(Math.abs(body.scores[0] - 1 / (1 + Math.exp(-reference))) < TOL, 'scores = sigmoid(reward), in 0..1')
  t.same(Object.keys(body.extra_logs).sort(), [...LOG_KEYS].sort())
  t.same(body.extra_logs.template_chatml, [1], 'the detected template is in extra_logs, one-hot')
  t.same(body.extra_logs.template_qwen2, [0])
  t.same(body.extra_logs.response_tokens, [responseTokens])
  t.same(body.templates, ['chatml'])
  t.same(body.shaping, { template: 'auto', normalize: false, clip: null, length_penalty: null, scores: 'sigmoid' })
})

t.test('OpenRLHF batch: every supported template, in input order', async (t) => {
  const { post, reference } = await setup(t)
  const plainQuery = `${PLAIN_PROMPT} ${ANSWER}</s>`
  const res = await post('/get_reward?template=auto_or_plain', {
    query: [CHATML, LLAMA3, IXC, INTERNLM2, plainQuery],
    prompts: ['', '', '', '', PLAIN_PROMPT],
    labels: ['a', 'b', 'c', 'd', 'e'],
  })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(body.templates, ['chatml', 'llama3', 'ixc', 'internlm2', 'plain'])
  t.same(body.extra_logs.template_plain, [0, 0, 0, 0, 1])
  // The first four carry the same conversation; plain has the whole "Human: …" prompt as its user turn.
  for (let i = 0; i < 4; i++) t.ok(Math.abs(body.rewards[i] - reference) < TOL, `query ${i}`)
  const plainRef = (await post('/v1/score', {
    items: [{ messages: [{ role: 'user', content: PLAIN_PROMPT }, { role: 'assistant', content: ANSWER }] }],
  })).json().scores[0]
  t.ok(Math.abs(body.rewards[4] - plainRef) < TOL, 'plain split')
  t.equal(body.scores.length, 5)
  for (const v of Object.values(body.extra_logs) as number[][]) t.equal(v.length, 5)
})

t.test('explicit template per URL and per body; qwen2 drops its injected system prompt', async (t) => {
  const { post, reference } = await setup(t)
  const withSystem = (await post('/get_reward?template=chatml', { query: [QWEN], prompts: [], labels: null })).json()
  const qwen = (await post('/get_reward?template=qwen2', { query: [QWEN], prompts: [], labels: null })).json()
  t.ok(Math.abs(qwen.rewards[0] - reference) < TOL)
  t.not(withSystem.rewards[0], qwen.rewards[0], 'chatml keeps the system turn, so the RM sees a different conversation')
  const bodyWins = (await post('/get_reward?template=chatml', { query: [QWEN], template: 'qwen2' })).json()
  t.equal(bodyWins.rewards[0], qwen.rewards[0])
  t.equal(bodyWins.shaping.template, 'qwen2')
})

t.test('empty lists (multi-server sharding) answer empty lists without scoring', async (t) => {
  const { post, engine } = await setup(t)
  const before = engine.batches.length
  for (const payload of [{ query: [], prompts: [], labels: [] }, { query: [], prompts: [], labels: null }, { query: [] }, { messages: [] }]) {
    const res = await post('/get_reward', payload)
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same({ ...body, shaping: undefined, extra_logs: undefined }, { rewards: [], scores: [], templates: [] })
    // Every key, with [] (OpenRLHF merges its shards' answers by the first answer's keys).
    t.same(Object.keys(body.extra_logs).sort(), [...LOG_KEYS].sort())
    t.ok(Object.values(body.extra_logs).every((v) => Array.isArray(v) && v.length === 0))
  }
  t.equal(engine.batches.length, before, 'the engine did not run')
})

t.test('native multimodal variant: messages per sample', async (t) => {
  const { post, reference } = await setup(t)
  const res = await post('/get_reward', { messages: [messages, messages] })
  t.equal(res.statusCode, 200)
  t.ok(res.json().rewards.every((r: number) => Math.abs(r - reference) < TOL))
  t.same(res.json().templates, ['messages', 'messages'])
  // Media parts go through the media path (the fake model has no image preprocessing: a clear 422).
  const img = await post('/get_reward', {
    messages: [[{ role: 'user', content: [{ type: 'image', data: 'aGk=' }, { type: 'text', text: 'what?' }] }, { role: 'assistant', content: 'a cat' }]],
  })
  t.equal(img.statusCode, 422)
  t.equal(img.json().error.code, 'unsupported_modality')
})

t.test('shaping: normalize, length penalty, clip from URL, body and config; echoed', async (t) => {
  // fake model train_stats: mean 0.5, std 2
  const { post, reference } = await setup(t)
  const z = (reference - 0.5) / 2
  const norm = (await post('/get_reward?normalize=true', { query: [CHATML] })).json()
  t.ok(Math.abs(norm.rewards[0] - z) < TOL)
  t.ok(Math.abs(norm.extra_logs.raw_reward[0] - reference) < TOL, 'raw logit still logged')
  t.equal(norm.shaping.normalize, true)

  const threshold = responseTokens - 10
  const pen = (await post(`/get_reward?length_penalty=${threshold}:0.5`, { query: [CHATML] })).json()
  t.ok(Math.abs(pen.rewards[0] - (reference - 5)) < TOL, '10 tokens over, 0.5 each')
  t.same(pen.extra_logs.length_penalty, [5])
  t.same(pen.shaping.length_penalty, { threshold, per_token: 0.5 })

  const clip = (await post('/get_reward', { query: [CHATML], options: { clip: { min: -0.001, max: 0.001 } } })).json()
  t.ok(Math.abs(Math.abs(clip.rewards[0]) - 0.001) < TOL)
  t.same(clip.extra_logs.clipped, [1])

  const { post: post2 } = await setup(t, { RLHF_NORMALIZE: 'true', RLHF_CLIP: '-100,100', RLHF_SCORES: 'reward' })
  const cfg = (await post2('/get_reward', { query: [CHATML] })).json()
  t.ok(Math.abs(cfg.rewards[0] - z) < TOL, 'config default applies')
  t.same(cfg.scores, cfg.rewards, 'RLHF_SCORES=reward')
  const off = (await post2('/get_reward?normalize=false&clip=off', { query: [CHATML] })).json()
  t.ok(Math.abs(off.rewards[0] - reference) < TOL, 'URL switches the config default off')
  t.equal(off.shaping.clip, null)
})

t.test('refusals are 4xx with a reason', async (t) => {
  const { post } = await setup(t)
  const cases: Array<[string, unknown, RegExp]> = [
    ['/get_reward', { query: ['no markers'], prompts: [] }, /query\[0\]: template=auto found no chat-template marker/],
    ['/get_reward?template=auto_or_plain', { query: ['no markers'], prompts: [] }, /query\[0\]: template "plain" needs the prompt/],
    ['/get_reward?clip_min=-5', { query: [CHATML] }, /both clip_min and clip_max/],
    ['/get_reward?clip_min=5&clip_max=-5', { query: [CHATML] }, /clip_min must be <= clip_max/],
    ['/get_reward?clip_min=-5&clip_max=5&clip=-1:1', { query: [CHATML] }, /not both/],
    ['/get_reward?template=chatml', { query: [CHATML, 'plain text'] }, /query\[1\]: query has no chatml turn marker/],
    ['/get_reward', { query: [CHATML], prompts: ['a', 'b'] }, /prompts must be empty or as long as query/],
    ['/get_reward', { query: [CHATML], messages: [messages] }, /either query/],
    ['/get_reward', {}, /either query/],
    ['/get_reward?template=vicuna', { query: [CHATML] }, /template/],
    ['/get_reward?clip=5,-5', { query: [CHATML] }, /min <= max/],
    ['/get_reward', { query: [CHATML], options: { temperature: 1 } }, /temperature|Unrecognized/i],
    ['/get_reward', { query: 'not a list' }, /query/],
  ]
  for (const [url, payload, msg] of cases) {
    const res = await post(url, payload)
    t.equal(res.statusCode, 422, `${url} ${JSON.stringify(payload).slice(0, 60)}`)
    t.equal(res.json().error.code, 'invalid_request')
    t.match(res.json().error.message, msg)
  }
  const { post: noStats } = await setup(t, {}, { trainStats: { mean: 0, std: 1, n: 0 } })
  const res = await noStats('/get_reward?normalize=true', { query: [CHATML] })
  t.equal(res.statusCode, 422)
  t.match(res.json().error.message, /no training statistics/)
})

t.test('clip without a comma: -5:5 and clip_min/clip_max (OpenRLHF splits --remote_rm_url at commas)', async (t) => {
  const { post } = await setup(t)
  for (const q of ['clip=-0.001:0.001', 'clip_min=-0.001&clip_max=0.001']) {
    const res = await post(`/get_reward?${q}`, { query: [CHATML] })
    t.equal(res.statusCode, 200, q)
    t.same(res.json().shaping.clip, { min: -0.001, max: 0.001 }, q)
    t.same(res.json().extra_logs.clipped, [1], q)
  }
  // OpenRLHF's own split of a documented recipe URL yields exactly one server.
  const recipe = 'http://rm-host:8080/get_reward?template=qwen2&normalize=true&clip=-5:5&length_penalty=512:0.001'
  t.equal(recipe.split(',').length, 1)
})

t.test('tool calling (TRL): tool role and content null accepted, rendered as the RM template renders them', async (t) => {
  const { post } = await setup(t)
  const call = { type: 'function', function: { name: 'add', arguments: { a: 2, b: 2 } } }
  const withTools = [
    { role: 'user', content: USER },
    { role: 'assistant', content: null, tool_calls: [call] },
    { role: 'tool', name: 'add', content: '4' },
    { role: 'assistant', content: ANSWER },
  ]
  const rendered = [
    { role: 'user', content: USER },
    { role: 'assistant', content: '{"name":"add","arguments":{"a":2,"b":2}}' },
    { role: 'user', content: '4' },
    { role: 'assistant', content: ANSWER },
  ]
  const res = await post('/get_reward', { messages: [withTools] })
  t.equal(res.statusCode, 200, res.body)
  const ref = (await post('/v1/score', { items: [{ messages: rendered }] })).json().scores[0]
  t.ok(Math.abs(res.json().rewards[0] - ref) < TOL, 'tool turn = user turn, tool call = JSON line in the assistant turn')
  // OpenAI's string arguments render the same; content next to tool calls is kept in front of them.
  const strArgs = structuredClone(withTools)
  ;(strArgs[1] as { tool_calls: Array<{ function: { arguments: unknown } }> }).tool_calls[0]!.function.arguments = '{"a": 2, "b": 2}'
  t.equal((await post('/get_reward', { messages: [strArgs] })).json().rewards[0], res.json().rewards[0])
  const both = structuredClone(withTools)
  both[1]!.content = 'Let me add.'
  const bothRef = structuredClone(rendered)
  bothRef[1]!.content = 'Let me add.\n{"name":"add","arguments":{"a":2,"b":2}}'
  const r2 = (await post('/get_reward', { messages: [both] })).json().rewards[0]
  t.ok(Math.abs(r2 - (await post('/v1/score', { items: [{ messages: bothRef }] })).json().scores[0]) < TOL)
  // A tool message cannot be the response scored.
  const last = await post('/get_reward', { messages: [withTools.slice(0, 3)] })
  t.equal(last.statusCode, 422)
  t.match(last.json().error.message, /last message must be the assistant/)
})

t.test('rollout-sized requests: 1024 queries admitted by token cost, scored in pieces, interleaved', async (t) => {
  const N = 1024
  const { app, engine, post, reference } = await setup(t, { MAX_PENDING_ITEMS: '64', MAX_CLIENT_BATCH_SIZE: '32', MAX_BATCH_SIZE: '8' })
  const before = engine.batches.length
  engine.hold()
  const big = post('/get_reward', { query: Array.from({ length: N }, () => CHATML), prompts: [], labels: Array(N).fill(null) })
  await engine.started(before + 1)
  // Another client arrives while the rollout is being scored: it is admitted (the rollout holds one piece of
  // 32 of the 64 pending slots) and queued behind that piece only, not behind the whole rollout.
  const rowsBefore = engine.rowsRun.length
  const small = post('/get_reward', { query: [CHATML.replace(ANSWER, 'Another client.')] })
  while (app.batcher.pendingItems < 33) await new Promise((r) => setTimeout(r, 5))
  engine.release()
  t.equal((await small).statusCode, 200)
  const bigRow = engine.rowsRun[rowsBefore]!.join(',')
  const ranBeforeSmall = engine.rowsRun.slice(rowsBefore).findIndex((r) => r.join(',') !== bigRow)
  const res = await big
  t.equal(res.statusCode, 200, res.body.slice(0, 200))
  const body = res.json()
  t.equal(body.rewards.length, N)
  t.ok(body.rewards.every((r: number) => Math.abs(r - reference) < TOL))
  t.ok(ranBeforeSmall >= 0 && ranBeforeSmall <= 32, `the other client's row ran after ${ranBeforeSmall} of ${N} rollout rows`)
  t.ok(Math.max(...engine.batches) <= 8)
  t.equal(app.batcher.pendingItems, 0, 'every permit released')

  // The ceilings are tokens and samples, not MAX_CLIENT_BATCH_SIZE; over them a 413 that says what to do.
  const { post: tight } = await setup(t, { RLHF_MAX_REQUEST_TOKENS: '200', MAX_CLIENT_BATCH_SIZE: '4' })
  const over = await tight('/get_reward', { query: Array(10).fill(CHATML) })
  t.equal(over.statusCode, 413)
  t.match(over.json().error.message, /tokens over 10 samples; the limit is 200 \(RLHF_MAX_REQUEST_TOKENS\)/)
  t.equal((await tight('/get_reward', { query: Array(3).fill(CHATML) })).statusCode, 200, '3 short samples fit 200 tokens')
  const { post: fewer } = await setup(t, { RLHF_MAX_QUERIES: '5' })
  const many = await fewer('/get_reward', { query: Array(6).fill(CHATML) })
  t.equal(many.statusCode, 413)
  t.match(many.json().error.message, /6 samples in one request; the limit is 5/)
})
