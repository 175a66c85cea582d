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
  t.same(Object.keys(body.extra_logs).sort(), ['clipped', 'length_penalty', 'raw_reward', 'response_tokens', 'truncated'])
  t.same(body.extra_logs.response_tokens, [responseTokens])
  t.same(body.templates, ['chatml'])
  t.same(body.shaping, { template: 'auto', normalize: false, clip: null, length_penalty: null, scores: 'sigmoid' })
})

t.test('OpenRLHF batch: every supported template, in input order', async (t) => {
  const { post, reference } = await setup(t)
  const plainQuery = `${PLAIN_PROMPT} ${ANSWER}</s>`
  const res = await post('/get_reward', {
    query: [CHATML, LLAMA3, IXC, INTERNLM2, plainQuery],
    prompts: ['', '', '', '', PLAIN_PROMPT],
    labels: ['a', 'b', 'c', 'd', 'e'],
  })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(body.templates, ['chatml', 'llama3', 'ixc', 'chatml', 'plain'])
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
    t.same({ ...res.json(), shaping: undefined }, { rewards: [], scores: [], extra_logs: {}, templates: [], shaping: undefined })
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
    ['/get_reward', { query: ['no markers'], prompts: [] }, /query\[0\]: template "plain" needs the prompt/],
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
