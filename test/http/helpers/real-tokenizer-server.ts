// Child-process server for tests that measure the server's own event loop: the real model's tokenizer and
// encoder, a fake engine, real HTTP on an ephemeral port (printed as "port <n>"). Env: the usual config knobs.
import { buildApp } from '../../../src/app.ts'
import { loadConfig } from '../../../src/config.ts'
import { readVersion } from '../../../src/models/load.ts'
import { ModelRegistry } from '../../../src/models/registry.ts'
import type { ModelVersion } from '../../../src/models/model-version.ts'
import { FakeEngine } from '../../helpers/fake-engine.ts'
import { realModelDir } from '../../helpers/real-model.ts'

const config = loadConfig({ LOG_LEVEL: 'silent', THREADS: '1', ...process.env })
const entry = await realModelDir()
const { manifest, encoder } = await readVersion(entry, { maxBatchTokens: 0, maxItemChars: config.maxItemChars, tokenizeInlineChars: config.tokenizeInlineChars })
const g = { inputNames: [], outputNames: [], executionProvider: 'fake', fallbacks: [] }
const model: ModelVersion = { key: `${entry.name}/${entry.version}`, name: entry.name, version: entry.version, dir: entry.dir, manifest, encoder, graphs: { reward: g, vision: g } }
const models = new ModelRegistry()
models.publish(model)
const app = buildApp(config, { engine: new FakeEngine(), models })
const address = await app.listen({ port: 0, host: '127.0.0.1' })
console.log(`port ${new URL(address).port}`)
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)))
