// State one HTTP request shares across all its conversations' media: uploaded files (multipart) and the
// byte/count budget. Kept in a WeakMap keyed by the request object, so it dies with the request and no Fastify
// decoration is needed.

export interface UploadedFile {
  path: string // inside the request's temp dir, server-named
  bytes: number
}

export interface MediaRequestScope {
  files: Map<string, UploadedFile>
  filesCount: number
  bytes: number
}

const scopes = new WeakMap<object, MediaRequestScope>()

export function mediaScopeOf(owner: object): MediaRequestScope {
  let s = scopes.get(owner)
  if (!s) {
    s = { files: new Map(), filesCount: 0, bytes: 0 }
    scopes.set(owner, s)
  }
  return s
}
