// Getting the bytes of a media part: inline base64 / data: URI, a multipart file referenced by name, or (when
// enabled) a remote URL. Byte and count limits are checked before anything is decoded.
import { readFile, stat } from 'node:fs/promises'
import { ServiceError } from '../../errors.ts'
import type { MediaPart } from './types.ts'
import type { MediaConfig } from './media-config.ts'
import { fetchRemoteMedia, type FetchLike } from './remote-url.ts'
import { decodeBase64Strict } from './base64.ts'
import type { UploadedFile } from './request-scope.ts'

export interface BudgetCounters {
  filesCount: number
  bytes: number
}

// Per-request accounting: every media part of the request is charged to the same counters.
export function chargeMedia(counters: BudgetCounters, size: number, cfg: MediaConfig): void {
  counters.filesCount++
  counters.bytes += size
  if (counters.filesCount > cfg.maxFilesPerRequest) {
    throw new ServiceError('payload_too_large', `more than ${cfg.maxFilesPerRequest} media parts in one request`)
  }
  if (size > cfg.maxFileBytes) throw new ServiceError('payload_too_large', `media part is ${size} bytes, over the limit of ${cfg.maxFileBytes}`)
  if (counters.bytes > cfg.maxRequestBytes) throw new ServiceError('payload_too_large', `media in this request is over ${cfg.maxRequestBytes} bytes`)
}

// Accepts plain base64 (standard or URL alphabet, whitespace ignored; base64.ts) or a `data:[<type>][;base64],<data>`
// URI. The declared type of a data: URI is ignored: the bytes are sniffed later.
export function decodeInlineData(data: string, maxBytes: number): Uint8Array {
  let payload = data
  if (payload.startsWith('data:')) {
    const comma = payload.indexOf(',')
    if (comma < 0 || !/;base64$/i.test(payload.slice(0, comma))) {
      throw new ServiceError('invalid_request', 'media data: URI must be base64-encoded')
    }
    payload = payload.slice(comma + 1)
  }
  // the decoded size is known from the length: refuse before allocating
  const buf = decodeBase64Strict(payload, (chars) => Math.floor((chars * 3) / 4) > maxBytes + 2)
  if (buf === 'too_large') throw new ServiceError('payload_too_large', `inline media is over the limit of ${maxBytes} bytes`)
  if (buf === 'invalid') throw new ServiceError('invalid_request', 'media data is not valid base64')
  if (buf.length > maxBytes) throw new ServiceError('payload_too_large', `inline media is ${buf.length} bytes, over the limit of ${maxBytes}`)
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

export interface LoadContext {
  cfg: MediaConfig
  budget: BudgetCounters
  files: ReadonlyMap<string, UploadedFile>
  fetchImpl?: FetchLike
}

export interface LoadedMedia {
  bytes: Uint8Array
  path?: string // set when the bytes already live in the request's temp dir
}

export async function loadPartBytes(part: MediaPart, ctx: LoadContext): Promise<LoadedMedia> {
  const sources = [part.data, part.file, part.url, part.sha256].filter((v) => v !== undefined).length
  if (sources !== 1) throw new ServiceError('invalid_request', `a ${part.type} part needs exactly one of "data", "file", "url" or "sha256"`)
  if (typeof part.data === 'string') {
    const bytes = decodeInlineData(part.data, ctx.cfg.maxFileBytes)
    chargeMedia(ctx.budget, bytes.length, ctx.cfg)
    return { bytes }
  }
  if (typeof part.file === 'string') {
    const f = ctx.files.get(part.file)
    if (!f) throw new ServiceError('invalid_request', `no uploaded file named ${JSON.stringify(part.file.slice(0, 64))} in this request`)
    const size = (await stat(f.path)).size
    chargeMedia(ctx.budget, size, ctx.cfg)
    return { bytes: new Uint8Array(await readFile(f.path)), path: f.path }
  }
  if (typeof part.url === 'string') {
    const bytes = await fetchRemoteMedia(part.url, { ...ctx.cfg.remoteUrls, maxBytes: Math.min(ctx.cfg.remoteUrls.maxBytes, ctx.cfg.maxFileBytes) }, ctx.fetchImpl)
    chargeMedia(ctx.budget, bytes.length, ctx.cfg)
    return { bytes }
  }
  throw new ServiceError('invalid_request', `a ${part.type} part's "data", "file" or "url" must be a string`)
}
