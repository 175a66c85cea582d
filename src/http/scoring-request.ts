// The prelude every scoring route shares (/v1/score, /v1/compare, /v1/rank, /get_reward): check the row count,
// resolve the model (the request keeps this version to the end), prepare the normalizer when asked for, and
// score message rows through app.scoring with the request's deadline, abort signal and uploads, recording the
// timings for the response headers.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ModelVersion } from '../models/model-version.ts'
import { mediaScopeOf } from '../preprocess/media/request-scope.ts'
import { normalizer } from '../scoring/normalize.ts'
import { ServiceError } from '../errors.ts'
import type { PieceOptions, ScoredRow, ScoreRow } from '../scoring/types.ts'

export interface ScoringRequest {
  model: ModelVersion
  /** The model as answers name it. */
  ref: { name: string; version: number }
  /** z-scores with the model's training statistics; null unless normalization was asked for. */
  z: ((r: number) => number) | null
  score(rows: readonly ScoreRow[]): Promise<ScoredRow[]>
}

export function scoringRequest(
  app: FastifyInstance,
  request: FastifyRequest,
  opts: { model: string | undefined; rows: number; normalize: boolean; pieces?: PieceOptions & { maxRows: number } },
): ScoringRequest {
  if (!opts.pieces) app.scoring.checkRowCount(opts.rows)
  else if (opts.rows > opts.pieces.maxRows) {
    throw new ServiceError('payload_too_large', `${opts.rows} samples in one request; the limit is ${opts.pieces.maxRows}: send it in smaller requests`)
  }
  const model = app.models.resolve(opts.model)
  return {
    model,
    ref: { name: model.name, version: model.version },
    z: opts.normalize ? normalizer(model) : null,
    async score(rows) {
      const pieces = opts.pieces && { rows: opts.pieces.rows, maxTokens: opts.pieces.maxTokens }
      const scoreOpts = { deadline: request.deadline, signal: request.clientGone, scope: mediaScopeOf(request), pieces }
      const r = await app.scoring.score(model, rows, scoreOpts)
      request.timings = r.timings
      return r.rows
    },
  }
}
