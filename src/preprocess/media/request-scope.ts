// State one HTTP request shares across all its conversations' media: uploaded files (multipart), the byte/count
// budget, and the decode memo (the same image in several conversations of one request is decoded once). Kept in a
// WeakMap keyed by the request object, so it dies with the request and no Fastify decoration is needed.
import type { ImageTensor } from '../image/hd-transform.ts'
import type { UploadedFile } from './input.ts'

export interface MediaRequestScope {
  files: Map<string, UploadedFile>
  filesCount: number
  bytes: number
  tensors: Map<string, Promise<ImageTensor>>
}

const scopes = new WeakMap<object, MediaRequestScope>()

export function mediaScopeOf(owner: object): MediaRequestScope {
  let s = scopes.get(owner)
  if (!s) {
    s = { files: new Map(), filesCount: 0, bytes: 0, tensors: new Map() }
    scopes.set(owner, s)
  }
  return s
}
