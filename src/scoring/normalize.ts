// What a raw reward logit becomes in an answer: a z-score with the model's training statistics, or a
// probability (Bradley-Terry, /get_reward's `scores`).
import { ServiceError } from '../errors.ts'
import type { ModelVersion } from '../models/model-version.ts'

/** z = (r - mean) / std with the model's training statistics (manifest score.train_stats). */
export function normalizer(model: ModelVersion): (r: number) => number {
  const { mean, std, n } = model.manifest.score.train_stats
  if (!(std > 0) || n === 0) {
    throw new ServiceError('invalid_request', `model ${model.key} has no training statistics; normalize is unavailable`)
  }
  return (r) => (r - mean) / std
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))
}
