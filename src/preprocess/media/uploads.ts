// One request's uploaded files (multipart; the HTTP side is src/http/plugins/multipart.ts): streamed to a
// per-request temp directory under server-generated names (client file names and MIME types are ignored), the
// byte limits enforced while streaming (an oversized upload is cut off, not read to the end), and registered in
// the request's media scope, where media parts reference them by field name (`{ "type": "image", "file": "img1" }`).
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ServiceError } from '../../errors.ts'
import type { MediaConfig } from './media-config.ts'
import type { MediaRequestScope } from './request-scope.ts'
import { createRequestTempDir, type RequestTempDir } from './temp-dir.ts'

export const FILE_FIELD = /^[A-Za-z0-9_.-]{1,64}$/

export class RequestUploads {
  #total = 0

  private constructor(
    private readonly cfg: MediaConfig,
    private readonly scope: MediaRequestScope,
    private readonly dir: RequestTempDir,
  ) {}

  /** Creates the request's directory; call remove() when the request ends, however it ends. */
  static async open(cfg: MediaConfig, scope: MediaRequestScope): Promise<RequestUploads> {
    return new RequestUploads(cfg, scope, await createRequestTempDir(cfg.tempDir))
  }

  /** Streams one file to disk. `file.truncated` (set by the multipart parser when its own limit cut the file) is
   *  a refusal too. */
  async save(name: string, file: Readable & { truncated?: boolean }): Promise<void> {
    if (!FILE_FIELD.test(name) || this.scope.files.has(name)) {
      file.resume()
      throw new ServiceError('bad_request', `file field names must be unique and match ${FILE_FIELD.source}`)
    }
    const { cfg } = this
    const path = join(this.dir.path, randomUUID())
    let bytes = 0
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        bytes += chunk.length
        this.#total += chunk.length
        // checked here, per chunk: busboy's own fileSize limit only reports at the end of the part, after it has
        // read (and discarded) the whole rest of the upload
        if (bytes > cfg.maxFileBytes) cb(new ServiceError('payload_too_large', `file "${name}" is over the limit of ${cfg.maxFileBytes} bytes`))
        else if (this.#total > cfg.maxRequestBytes) cb(new ServiceError('payload_too_large', `uploads are over the limit of ${cfg.maxRequestBytes} bytes per request`))
        else cb(null, chunk)
      },
    })
    await pipeline(file, counter, createWriteStream(path, { flags: 'wx' }))
    if (file.truncated) throw new ServiceError('payload_too_large', `file "${name}" is over the limit of ${cfg.maxFileBytes} bytes`)
    this.scope.files.set(name, { path, bytes })
  }

  remove(): Promise<void> {
    return this.dir.remove()
  }
}
