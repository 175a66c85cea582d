// The remote-URL policy (SSRF): off by default; when on, https to allow-listed hosts only, with byte and time
// limits. No real network: fetch is injected.
import t from 'tap'
import { checkRemoteUrl, fetchRemoteMedia, type FetchLike } from '../../src/preprocess/media/remote-url.ts'

const on = { enabled: true, allowedHosts: ['media.example.com'], maxBytes: 1000, timeoutMs: 200 }

t.test('policy', async (t) => {
  t.throws(() => checkRemoteUrl('https://media.example.com/a.png', { ...on, enabled: false }), { code: 'url_not_allowed' }, 'off by default')
  t.equal(checkRemoteUrl('https://media.example.com/a.png', on).hostname, 'media.example.com')
  t.doesNotThrow(() => checkRemoteUrl('https://MEDIA.example.com./a.png', on), 'case and trailing dot')
  for (const bad of [
    'http://media.example.com/a.png', // not https
    'https://evil.example.com/a.png', // not on the list
    'https://media.example.com.evil.com/a.png', // suffix trick
    'https://user:pw@media.example.com/a.png', // credentials
    'https://media.example.com:8443/a.png', // other port
    'https://127.0.0.1/a.png', 'https://[::1]/a.png', 'https://169.254.169.254/latest/meta-data',
    'file:///etc/passwd', 'ftp://media.example.com/a', 'not a url', '//media.example.com/a.png',
  ]) {
    t.throws(() => checkRemoteUrl(bad, on), { code: 'url_not_allowed' }, bad)
  }
})

const respond = (body: Uint8Array, init: ResponseInit = {}): FetchLike => async () => new Response(body as unknown as BodyInit, init)

t.test('fetch: limits and failures', async (t) => {
  const bytes = new Uint8Array(500).fill(7)
  t.same(await fetchRemoteMedia('https://media.example.com/a', on, respond(bytes)), bytes)
  await t.rejects(fetchRemoteMedia('https://media.example.com/a', on, respond(new Uint8Array(1001))), { code: 'payload_too_large' }, 'streamed bytes over the limit')
  await t.rejects(fetchRemoteMedia('https://media.example.com/a', on, async () => new Response(new Uint8Array(10) as unknown as BodyInit, { headers: { 'content-length': '5000' } })), { code: 'payload_too_large' }, 'declared length over the limit')
  await t.rejects(fetchRemoteMedia('https://media.example.com/a', on, respond(bytes, { status: 404 })), { code: 'remote_fetch_failed' })
  const hang: FetchLike = (_url, init) => new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)))
  const t0 = Date.now()
  // AbortSignal.timeout's timer is unref'd; in a server the loop is alive anyway, here a ref'd timer keeps it so
  const alive = setTimeout(() => {}, 5000)
  await t.rejects(fetchRemoteMedia('https://media.example.com/a', on, hang), { code: 'remote_fetch_failed', message: /longer than 200 ms/ })
  clearTimeout(alive)
  t.ok(Date.now() - t0 < 2000)
  let redirect: string | undefined
  await fetchRemoteMedia('https://media.example.com/a', on, async (_u, init) => ((redirect = init.redirect), new Response(bytes as unknown as BodyInit)))
  t.equal(redirect, 'error', 'redirects are not followed (they could leave the allow-list)')
  await t.rejects(fetchRemoteMedia('https://evil.example.com/a', on, respond(bytes)), { code: 'url_not_allowed' }, 'policy checked before fetching')
})
