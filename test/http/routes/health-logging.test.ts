// Probe routes (/healthz, /readyz, polled every few seconds) leave no info-level access lines; other routes do,
// and a failing readiness probe is still logged.
import t from 'tap'
import Fastify from 'fastify'
import { Writable } from 'node:stream'
import healthRoutes from '../../../src/http/routes/health.ts'

async function appWithLog(ready: boolean) {
  const lines: Array<{ level: number; msg: string; req?: { url: string }; reqId?: string }> = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l))
      cb()
    },
  })
  const app = Fastify({ logger: { level: 'info', stream } })
  app.decorate('lifecycle', { shuttingDown: false, inflight: 0 } as never)
  app.decorate('engine', { health: async () => ready } as never)
  app.decorate('models', { isReady: () => ready, servingModels: () => [] } as never)
  app.decorate('media', {} as never)
  await app.register(healthRoutes)
  app.get('/other', async () => ({}))
  await app.ready()
  return { app, lines }
}

t.test('probes are not logged at info, other routes are', async (t) => {
  const { app, lines } = await appWithLog(true)
  t.teardown(() => app.close())
  for (const url of ['/healthz', '/readyz']) t.equal((await app.inject({ url })).statusCode, 200)
  t.same(lines.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed'), [], 'no access lines for probes')
  await app.inject({ url: '/other' })
  t.ok(lines.some((l) => l.msg === 'incoming request' && l.req?.url === '/other'), 'a normal route is logged at info')
})

t.test('a failing readiness probe still reaches the log', async (t) => {
  const { app, lines } = await appWithLog(false)
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: '/readyz' })).statusCode >= 500, true)
  t.ok(lines.some((l) => l.level >= 40), 'logged at warn or above')
})
