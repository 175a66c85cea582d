// buildApp with a fake engine and a published fake model; every knob overridable, never read from the env.
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../../src/app.ts'
import { loadConfig, type Config } from '../../src/config.ts'
import { ModelRegistry } from '../../src/models/registry.ts'
import { FakeEngine } from './fake-engine.ts'
import { fakeModel, type FakeModelOptions } from './fake-model.ts'

export function testConfig(env: Record<string, string> = {}): Config {
  // no checksum cache by default: tests point MODELS_DIR at folders of the repo (models/, test/fixtures/models/)
  return loadConfig({ LOG_LEVEL: 'silent', THREADS: '1', CHECKSUM_CACHE: 'off', ...env })
}

export async function buildTestApp(
  env: Record<string, string> = {},
  opts: { deps?: Partial<AppDeps>; model?: FakeModelOptions } = {},
): Promise<{ app: FastifyInstance; engine: FakeEngine; models: ModelRegistry }> {
  const engine = new FakeEngine()
  const models = new ModelRegistry()
  models.publish(fakeModel(opts.model))
  const app = buildApp(testConfig(env), { engine, models, ...opts.deps })
  await app.ready()
  return { app, engine, models }
}
