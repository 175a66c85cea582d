// Vision-tensor buffers come back from the engine worker and carry the next image (tensor-pool.ts): real model,
// real worker threads (media transform and engine), real HTTP stack (inject), real images. A pooled buffer holds
// the previous image's values, so the score of an image written into one must equal the score the same image
// gets with pooling off.
import t from 'tap'
import { buildApp } from '../../src/app.ts'
import type { IxcMediaResolver } from '../../src/preprocess/media/resolver.ts'
import { testConfig } from '../helpers/build-app.ts'
import { MODELS_DIR } from '../helpers/real-model.ts'
import { fixtureBase64 } from '../preprocess/helpers/fixtures.ts'

const item = (image: string) => ({
  messages: [
    { role: 'user', content: [{ type: 'image', data: fixtureBase64(`images/real/${image}`) }, { type: 'text', text: 'describe it' }] },
    { role: 'assistant', content: 'a painting' },
  ],
})

async function start(env: Record<string, string>) {
  const app = buildApp(testConfig({ MODELS_DIR, REQUEST_TIMEOUT_MS: '120000', ...env }))
  await app.ready()
  t.teardown(() => app.close())
  const score = async (image: string): Promise<number> => {
    const res = await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item(image)] } })
    if (res.statusCode !== 200) throw new Error(res.body)
    return res.json().results[0].score
  }
  return { app, score, pool: (app.media as IxcMediaResolver).tensors }
}

t.test('the second image of a shape is written into the first one\'s buffer, and scores as without the pool', async (t) => {
  const pooled = await start({})
  await pooled.score('imagereward-1.webp')
  t.match(pooled.pool.stats(), { hits: 0, misses: 1, buffers: 1 }, 'the first image\'s buffer came back from the engine worker')
  const handed = pooled.app.engine.transferStats!().handedBack!
  t.ok(handed > 0, `${handed} bytes handed back`)
  const withPool = await pooled.score('imagereward-2.webp') // same size (512x512): same tensor shape
  t.match(pooled.pool.stats(), { hits: 1, misses: 1, buffers: 1 }, 'taken from the pool, and back again')

  const fresh = await start({ MEDIA_TENSOR_POOL_BYTES: '0' })
  const without = await fresh.score('imagereward-2.webp')
  t.match(fresh.pool.stats(), { hits: 0, buffers: 0 }, 'pool off: nothing kept')
  t.equal(withPool, without, `same score in a reused buffer (${withPool})`)
})
