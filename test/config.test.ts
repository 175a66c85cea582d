import os from 'node:os'
import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.ts'

t.test('defaults', async (t) => {
  const c = loadConfig({})
  t.equal(c.port, 8080)
  t.equal(c.host, '0.0.0.0')
  t.equal(c.modelsDir, 'models')
  t.same(c.executionProviders, ['cuda', 'webgpu', 'cpu'])
  t.ok(c.threads >= 1)
  t.same(c.apiKeys, [])
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.batch) && Object.isFrozen(c.executionProviders))
})

t.test('ENGINE_REPLICAS: the cores are divided among the replicas, and one batch in flight per replica', async (t) => {
  const cores = os.availableParallelism()
  const one = loadConfig({})
  t.same([one.engineReplicas, one.threads, one.batch.pipelineDepth], [1, cores, 1])
  const two = loadConfig({ ENGINE_REPLICAS: '2' })
  t.same([two.engineReplicas, two.threads, two.batch.pipelineDepth], [2, Math.max(1, Math.floor(cores / 2)), 2])
  const many = loadConfig({ ENGINE_REPLICAS: String(cores + 1) })
  t.equal(many.threads, 1, 'never fewer than one thread')
  const set = loadConfig({ ENGINE_REPLICAS: '2', THREADS: '3', PIPELINE_DEPTH: '3' })
  t.same([set.threads, set.batch.pipelineDepth], [3, 3], 'explicit values win')
  t.throws(() => loadConfig({ ENGINE_REPLICAS: '0' }), ConfigError)
})

t.test('PACK_ACROSS_REQUESTS: on unless set false', async (t) => {
  t.equal(loadConfig({}).batch.packAcrossRequests, true)
  t.equal(loadConfig({ PACK_ACROSS_REQUESTS: 'false' }).batch.packAcrossRequests, false)
  t.throws(() => loadConfig({ PACK_ACROSS_REQUESTS: 'maybe' }), ConfigError)
})

t.test('parses and coerces env strings; empty means unset', async (t) => {
  const c = loadConfig({ PORT: '0', EXECUTION_PROVIDERS: ' cpu ', MAX_BATCH_TOKENS: '4096', API_KEYS: 'a, b', HOST: '' })
  t.equal(c.port, 0)
  t.same(c.executionProviders, ['cpu'])
  t.equal(c.batch.maxBatchTokens, 4096)
  t.same(c.apiKeys, ['a', 'b'])
  t.equal(c.host, '0.0.0.0')
})

t.test('refuses nonsense', async (t) => {
  for (const env of [
    { PORT: '70000' },
    { PORT: 'eighty' },
    { EXECUTION_PROVIDERS: 'cuda,tpu' },
    { MAX_BATCH_SIZE: '0' },
    { MAX_PENDING_ITEMS: '4', MAX_CLIENT_BATCH_SIZE: '8' },
    { LOG_LEVEL: 'loud' },
  ]) {
    t.throws(() => loadConfig(env), ConfigError, JSON.stringify(env))
  }
})

t.test('STARTUP_TIMEOUT_MS: Fastify pluginTimeout for start-up (model loading); generous default, 0 = no limit', async (t) => {
  t.equal(loadConfig({}).startupTimeoutMs, 600_000)
  t.equal(loadConfig({ STARTUP_TIMEOUT_MS: '1500' }).startupTimeoutMs, 1500)
  t.equal(loadConfig({ STARTUP_TIMEOUT_MS: '0' }).startupTimeoutMs, 0)
  t.equal(loadConfig({ STARTUP_TIMEOUT_MS: '' }).startupTimeoutMs, 600_000, 'empty = unset')
  for (const v of ['-1', 'soon', '1.5', '10s']) {
    t.throws(() => loadConfig({ STARTUP_TIMEOUT_MS: v }), { name: 'ConfigError', message: /STARTUP_TIMEOUT_MS/ }, v)
  }
})
