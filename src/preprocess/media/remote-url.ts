// Remote media URLs. Off by default (a server that fetches what clients name is an SSRF primitive); when enabled,
// only https to hosts on an exact allow-list, default port, no credentials, no redirects, with a byte cap enforced
// while streaming and a deadline.
import { ServiceError } from '../../errors.ts'
import type { MediaConfig } from './media-config.ts'

export type RemoteUrlPolicy = MediaConfig['remoteUrls']

export function checkRemoteUrl(raw: string, policy: RemoteUrlPolicy): URL {
  if (!policy.enabled) throw new ServiceError('url_not_allowed', 'remote media URLs are disabled on this server; send the bytes (base64 or multipart)')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ServiceError('url_not_allowed', 'media URL is not a valid absolute URL')
  }
  if (url.protocol !== 'https:') throw new ServiceError('url_not_allowed', 'only https media URLs are allowed')
  if (url.username !== '' || url.password !== '') throw new ServiceError('url_not_allowed', 'media URLs must not carry credentials')
  if (url.port !== '') throw new ServiceError('url_not_allowed', 'media URLs must use the default https port')
  const host = url.hostname.toLowerCase().replace(/\.$/, '')
  if (!policy.allowedHosts.some((h) => h.toLowerCase() === host)) {
    throw new ServiceError('url_not_allowed', `host ${host} is not on the media allow-list`)
  }
  return url
}

export type FetchLike = (url: string, init: { signal: AbortSignal; redirect: 'error' }) => Promise<Response>

export async function fetchRemoteMedia(raw: string, policy: RemoteUrlPolicy, fetchImpl: FetchLike = fetch): Promise<Uint8Array> {
  const url = checkRemoteUrl(raw, policy)
  const signal = AbortSignal.timeout(policy.timeoutMs)
  let res: Response
  try {
    res = await fetchImpl(url.href, { signal, redirect: 'error' })
  } catch (err) {
    const timedOut = (err as Error)?.name === 'TimeoutError' || signal.aborted
    throw new ServiceError('remote_fetch_failed', timedOut ? `fetching the media URL took longer than ${policy.timeoutMs} ms` : 'fetching the media URL failed')
  }
  if (!res.ok) throw new ServiceError('remote_fetch_failed', `media URL answered HTTP ${res.status}`)
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (declared > policy.maxBytes) throw new ServiceError('payload_too_large', `remote media is ${declared} bytes, over the limit of ${policy.maxBytes}`)
  if (!res.body) return new Uint8Array(0)
  const chunks: Uint8Array[] = []
  let total = 0
  const reader = res.body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      total += value.length
      if (total > policy.maxBytes) {
        throw new ServiceError('payload_too_large', `remote media is over the limit of ${policy.maxBytes} bytes`)
      }
      chunks.push(value)
    }
  } catch (err) {
    if (err instanceof ServiceError) throw err
    throw new ServiceError('remote_fetch_failed', signal.aborted ? `fetching the media URL took longer than ${policy.timeoutMs} ms` : 'fetching the media URL failed')
  } finally {
    reader.cancel().catch(() => {})
  }
  const out = new Uint8Array(total)
  let o = 0
  for (const c of chunks) {
    out.set(c, o)
    o += c.length
  }
  return out
}
