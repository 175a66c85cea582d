// The model repository over the app's life: loads MODELS_DIR when the app becomes ready (unless the caller
// passed a filled registry), then decorates app.reloader (src/models/reload.ts), counts open requests for the
// drain of a swapped-out version, starts the watcher from what start-up loaded, and stops it on close.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ChecksumCache } from '../../models/checksums.ts'
import { loadRepository, type loadVersion } from '../../models/load.ts'
import { ModelReloader } from '../../models/reload.ts'

declare module 'fastify' {
  interface FastifyInstance {
    reloader: ModelReloader
  }
}

export interface HotReloadOptions {
  /** The app owns MODELS_DIR: load it at start-up and watch it. False when a registry was passed in (tests);
   *  POST /admin/models/reload still works then. */
  watch: boolean
  /** Loader of one version at start-up and on reload; the real one by default (a test seam). */
  load?: typeof loadVersion
}

async function hotReload(app: FastifyInstance, opts: HotReloadOptions): Promise<void> {
  const { config } = app
  const loadOptions = {
    engine: app.engine,
    registry: app.models,
    maxBatchTokens: config.batch.maxBatchTokens,
    maxItemChars: config.maxItemChars,
    tokenizeInlineChars: config.tokenizeInlineChars,
    log: app.log,
    checksums: new ChecksumCache(config.checksumCache),
  }
  if (opts.watch) app.addHook('onReady', async () => loadRepository(config.modelsDir, loadOptions, opts.load))
  const reloader = new ModelReloader({
    ...loadOptions,
    root: config.modelsDir,
    pollIntervalMs: opts.watch ? config.modelPollIntervalMs : 0,
    drainTimeoutMs: config.requestTimeoutMs + 5_000,
    load: opts.load,
  })
  app.decorate('reloader', reloader)
  app.addHook('onRequest', async (request) => {
    request.onEnd(reloader.requestStarted())
  })
  // After the start-up load hook above: the watcher starts from what start-up loaded.
  app.addHook('onReady', async () => {
    if (!opts.watch) return
    await reloader.markCurrent()
    reloader.start()
  })
  app.addHook('onClose', async () => reloader.close())
}

export default fp(hotReload, { name: 'hot-reload', dependencies: ['services', 'request-context'] })
