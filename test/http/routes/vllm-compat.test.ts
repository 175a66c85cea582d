// vLLM's pooling API (/pooling, /classify, /score and its body on /v1/score, /rerank) and the Jina / Cohere
// rerank shape, called with the request bodies those clients send (vLLM docs' examples, Jina's and Cohere's
// SDK payloads, Open WebUI's external reranker). Every value is checked against the native /v1/score of the
// same conversation, so a compat route that scored something else, or skipped/added the sigmoid, fails.
import t from 'tap'
import { sigmoid } from '../../../src/scoring/normalize.ts'
import { OpenAIMessageSchema, OpenAIPartSchema } from '../../../src/http/schemas/vllm.ts'
import { buildTestApp } from '../../helpers/build-app.ts'

const { app, engine } = await buildTestApp()
t.teardown(() => app.close())

/** Raw reward of prompt -> answer through the native route. */
async function native(prompt: string, answer: string, system?: string): Promise<number> {
  const messages = [...(system ? [{ role: 'system', content: system }] : []), { role: 'user', content: prompt }, { role: 'assistant', content: answer }]
  const r = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages }] } })
  if (r.statusCode !== 200) throw new Error(r.body)
  return r.json().scores[0]
}
/** Same value up to float64 rounding of the sigmoid (both sides come from the same float32 logit). */
const close = (t: { ok(v: boolean, m: string): unknown }, a: number, b: number, msg: string) => t.ok(Math.abs(a - b) < 1e-9, `${msg}: ${a} vs ${b}`)

const post = (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as object })

const q = 'What is the capital of France?'
const docs = ['The capital of Brazil is Brasilia.', 'The capital of France is Paris.', 'Horses and cows are both animals']

t.test('/pooling with messages (vLLM chat style): data[0].data = [raw reward]', async (t) => {
  const body = {
    model: 'fake-rm',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: q },
      { role: 'assistant', content: docs[1] },
    ],
  }
  const r = await post('/pooling', body)
  t.equal(r.statusCode, 200, r.body)
  const j = r.json()
  t.match(j, { object: 'list', model: 'fake-rm', data: [{ index: 0, object: 'pooling' }] })
  t.match(j.id, /^pool-[0-9a-f]{32}$/)
  t.equal(typeof j.created, 'number')
  t.equal(j.data.length, 1)
  close(t, j.data[0].data[0], await native(q, docs[1]!, 'Be brief.'), 'raw logit, no activation')
  t.ok(j.usage.prompt_tokens > 0)
  t.equal(j.usage.total_tokens, j.usage.prompt_tokens)
  const act = (await post('/pooling', { ...body, use_activation: true })).json()
  close(t, act.data[0].data[0], sigmoid(j.data[0].data[0]), 'use_activation: true gives the sigmoid')
})

t.test('/pooling with chat-templated input strings (completion style), one result per input', async (t) => {
  const chatml = (u: string, a: string) => `<|im_start|>user\n${u}<|im_end|>\n<|im_start|>assistant\n${a}<|im_end|>\n`
  const r = await post('/pooling', { model: 'fake-rm', input: [chatml(q, docs[0]!), chatml(q, docs[1]!)], task: 'classify' })
  t.equal(r.statusCode, 200, r.body)
  const d = r.json().data
  t.same(d.map((x: any) => x.index), [0, 1])
  close(t, d[0].data[0], await native(q, docs[0]!), 'input 0')
  close(t, d[1].data[0], await native(q, docs[1]!), 'input 1')
  const one = (await post('/pooling', { input: chatml(q, docs[2]!) })).json()
  close(t, one.data[0].data[0], await native(q, docs[2]!), 'a single string')
  const untemplated = await post('/pooling', { input: 'just some text' })
  t.equal(untemplated.statusCode, 422)
  t.equal(untemplated.json().error.param, 'input[0]')
  const ids = await post('/pooling', { input: [1, 2, 3] })
  t.equal(ids.statusCode, 422)
  t.match(ids.json().error.message, /token-id input is not supported/)
  const embed = await post('/pooling', { input: 'x', task: 'embed' })
  t.equal(embed.statusCode, 422, 'a reward model does not embed')
  t.equal((await post('/pooling', { input: 'x', messages: [{ role: 'user', content: 'x' }] })).statusCode, 422)
})

t.test('/classify: probs = [sigmoid(reward)], label and num_classes as vLLM reports a one-logit classifier', async (t) => {
  const messages = [{ role: 'user', content: q }, { role: 'assistant', content: docs[1] }]
  const r = await post('/classify', { model: 'fake-rm', messages })
  t.equal(r.statusCode, 200, r.body)
  const j = r.json()
  t.match(j.id, /^classify-/)
  t.same(Object.keys(j.data[0]).sort(), ['index', 'label', 'num_classes', 'probs'])
  t.same([j.data[0].label, j.data[0].num_classes], ['LABEL_0', 1])
  const raw = await native(q, docs[1]!)
  close(t, j.data[0].probs[0], sigmoid(raw), 'sigmoid by default')
  const off = (await post('/classify', { messages, use_activation: false })).json()
  close(t, off.data[0].probs[0], raw, 'use_activation: false -> raw')
  const legacy = (await post('/classify', { messages, activation: false })).json()
  close(t, legacy.data[0].probs[0], raw, 'activation (older name) honoured')
})

t.test('/score and /v1/score with vLLM bodies: text_1/text_2 and queries/documents, 1:N and N:N', async (t) => {
  const raws = await Promise.all(docs.map((d) => native(q, d)))
  // vLLM docs' /score example (1 query, N documents).
  const oneToN = { model: 'fake-rm', encoding_format: 'float', text_1: q, text_2: docs }
  for (const url of ['/score', '/v1/score']) {
    const r = await post(url, oneToN)
    t.equal(r.statusCode, 200, `${url}: ${r.body}`)
    const j = r.json()
    t.match(j, { object: 'list', model: 'fake-rm' })
    t.match(j.id, /^score-/)
    t.same(j.data.map((x: any) => [x.index, x.object]), docs.map((_, i) => [i, 'score']))
    j.data.forEach((x: any, i: number) => close(t, x.score, sigmoid(raws[i]!), `${url} doc ${i}`))
  }
  const nToN = (await post('/score', { queries: [q, q, q], documents: docs, use_activation: false })).json()
  nToN.data.forEach((x: any, i: number) => close(t, x.score, raws[i]!, `N:N raw ${i}`))
  const items = (await post('/score', { queries: q, items: docs })).json()
  t.equal(items.data.length, 3, 'queries + items spelling')
  const bad = await post('/score', { queries: [q, q], documents: docs })
  t.equal(bad.statusCode, 422)
  t.match(bad.json().error.message, /2 queries need 1 or 2 documents/)
  // The native body on /v1/score is unchanged.
  const mine = (await post('/v1/score', { items: [{ messages: [{ role: 'user', content: q }, { role: 'assistant', content: docs[0] }] }] })).json()
  t.same(Object.keys(mine).sort(), ['model', 'normalized', 'results', 'scores'])
})

t.test('multimodal score/rerank inputs: image_url parts reach the media path', async (t) => {
  t.same(OpenAIPartSchema.parse({ type: 'image_url', image_url: { url: 'data:image/png;base64,aGk=' } }), { type: 'image', data: 'data:image/png;base64,aGk=' })
  t.same(OpenAIPartSchema.parse({ type: 'image_url', image_url: 'https://h.example/a.png' }), { type: 'image', url: 'https://h.example/a.png' })
  t.same(OpenAIPartSchema.parse({ type: 'video_url', video_url: { url: 'https://h.example/v.mp4' } }), { type: 'video', url: 'https://h.example/v.mp4' })
  t.same(OpenAIPartSchema.parse({ type: 'text', text: 'hi' }), { type: 'text', text: 'hi' })
  t.same(OpenAIMessageSchema.parse({ role: 'developer', content: 'x' }), { role: 'system', content: 'x' })
  t.same(OpenAIMessageSchema.parse({ role: 'assistant', content: null, tool_calls: [] }), { role: 'assistant', content: '' })
  // vLLM docs' multimodal /score body, and a rerank document with an inline image: the fake model has no image
  // preprocessing, so the media path refuses them (422 unsupported_modality) -- which only a media part can hit.
  const r = await post('/score', { queries: q, documents: { content: [{ type: 'image_url', image_url: { url: 'https://h.example/a.png' } }] } })
  t.equal(r.statusCode, 422, r.body)
  t.equal(r.json().error.code, 'unsupported_modality')
  const inline = await post('/rerank', { query: q, documents: [{ content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,aGk=' } }] }] })
  t.equal(inline.json().error.code, 'unsupported_modality')
  const text = await post('/rerank', { query: q, documents: [{ content: [{ type: 'text', text: 'Paris' }] }] })
  t.equal(text.statusCode, 200, 'a text-only content list scores')
})

t.test('/rerank, /v1/rerank (Jina, vLLM), /v2/rerank (Cohere): sorted, top_n, documents echoed', async (t) => {
  const raws = await Promise.all(docs.map((d) => native(q, d)))
  const best = raws.map((_, i) => i).sort((a, b) => raws[b]! - raws[a]! || a - b)
  // Jina's API payload / vLLM's rerank example.
  const jina = { model: 'fake-rm', query: q, documents: docs, top_n: 2, return_documents: true }
  // Cohere SDK (co.rerank / co.v2.rerank) and Open WebUI's external reranker send no return_documents.
  const cohere = { model: 'fake-rm', query: q, documents: docs, top_n: 3 }
  for (const [url, body] of [['/rerank', jina], ['/v1/rerank', jina], ['/v2/rerank', cohere]] as const) {
    const r = await post(url, body)
    t.equal(r.statusCode, 200, `${url}: ${r.body}`)
    const j = r.json()
    t.match(j.id, /^rerank-/)
    t.equal(j.model, 'fake-rm')
    t.same(Object.keys(j.usage).sort(), ['prompt_tokens', 'total_tokens'])
    t.equal(j.results.length, body.top_n)
    t.same(j.results.map((x: any) => x.index), best.slice(0, body.top_n), `${url}: best first`)
    for (const x of j.results) {
      close(t, x.relevance_score, sigmoid(raws[x.index]!), `${url} result ${x.index}`)
      t.same(x.document, { text: docs[x.index] })
    }
  }
  const noDocs = (await post('/rerank', { query: q, documents: [{ text: docs[0] }, docs[1]], return_documents: false, use_activation: false })).json()
  t.equal(noDocs.results.length, 2, 'top_n absent: all')
  for (const x of noDocs.results) {
    t.notOk('document' in x)
    close(t, x.relevance_score, raws[x.index]!, 'raw with use_activation: false')
  }
  t.equal((await post('/rerank', { query: q, documents: [] })).statusCode, 422)
})

t.test('compat routes batch with the native ones and count against the same limits', async (t) => {
  const { app: small } = await buildTestApp({ MAX_CLIENT_BATCH_SIZE: '2', MAX_PENDING_ITEMS: '2' })
  t.teardown(() => small.close())
  const r = await small.inject({ method: 'POST', url: '/rerank', payload: { query: q, documents: docs } })
  t.equal(r.statusCode, 422)
  t.match(r.json().error.message, /the limit is 2/)
  const before = engine.rowsRun.length
  await Promise.all([post('/classify', { input: `<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>` }), post('/v1/score', { items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'b' }] }] })])
  t.equal(engine.rowsRun.length - before, 2, 'both went through the one engine')
})
