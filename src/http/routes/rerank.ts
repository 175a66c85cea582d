// POST /rerank, /v1/rerank (Jina, vLLM), /v2/rerank (Cohere v2) — one query, N documents (candidate answers),
// results sorted by relevance_score = sigmoid(reward of answering the query with the document), best first;
// `top_n` keeps the first n (0 or absent: all). `document` is echoed unless return_documents is false.
import type { FastifyInstance } from 'fastify'
import { parseBody } from '../schemas/common.ts'
import { RerankRequestSchema, wantsActivation } from '../schemas/vllm.ts'
import { activate, scorePairs, usage, vllmId } from '../vllm-compat.ts'

export const RERANK_PATHS = ['/rerank', '/v1/rerank', '/v2/rerank'] as const

export default async function rerankRoute(app: FastifyInstance) {
  for (const url of RERANK_PATHS) {
    app.post(url, async (request) => {
      const body = parseBody(RerankRequestSchema, request.body)
      const { run, rows } = await scorePairs(app, request, body.model, [body.query], body.documents)
      const f = activate(wantsActivation(body, true))
      const order = rows.map((_, i) => i).sort((i, j) => rows[j]!.score - rows[i]!.score || i - j)
      const n = body.top_n ? Math.min(body.top_n, order.length) : order.length
      const withDocs = body.return_documents !== false
      const results = order.slice(0, n).map((index) => {
        const d = body.documents[index]!
        return {
          index,
          ...(withDocs ? { document: typeof d === 'string' ? { text: d } : { text: null, multi_modal: d } } : {}),
          relevance_score: f(rows[index]!.score),
        }
      })
      const u = usage(rows)
      return { id: vllmId('rerank'), model: run.ref.name, usage: { prompt_tokens: u.prompt_tokens, total_tokens: u.total_tokens }, results }
    })
  }
}
