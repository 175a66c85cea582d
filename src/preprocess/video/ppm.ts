// Incremental parser for the concatenated binary PPM (P6, maxval 255) frames ffmpeg writes with
// `-f image2pipe -c:v ppm -`. Frames are handed out one by one as they complete, so a long video never sits in
// memory as a whole; a frame larger than the limit aborts the parse before its pixels are buffered.
import type { RgbImage } from '../image/rgb.ts'

export class PpmParseError extends Error {
  override name = 'PpmParseError'
}

const MAX_HEADER = 64

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09
}

export class PpmStreamParser {
  private header: number[] = []
  private frame: RgbImage | null = null
  private filled = 0
  frames = 0

  constructor(
    private readonly onFrame: (frame: RgbImage) => void,
    private readonly maxWidth: number,
    private readonly maxHeight: number,
  ) {}

  push(chunk: Uint8Array): void {
    let i = 0
    while (i < chunk.length) {
      if (this.frame === null) {
        this.header.push(chunk[i++])
        this.tryHeader()
        continue
      }
      const need = this.frame.data.length - this.filled
      const take = Math.min(need, chunk.length - i)
      this.frame.data.set(chunk.subarray(i, i + take), this.filled)
      this.filled += take
      i += take
      if (this.filled === this.frame.data.length) {
        const done = this.frame
        this.frame = null
        this.filled = 0
        this.frames++
        this.onFrame(done)
      }
    }
  }

  // Called at the end of the stream: leftover bytes mean a cut-off frame.
  end(): void {
    if (this.frame !== null || this.header.length > 0) throw new PpmParseError('frame stream ended inside a frame')
  }

  private tryHeader(): void {
    const h = this.header
    if (h.length > MAX_HEADER) throw new PpmParseError('PPM header too long')
    if (h.length === 1 && h[0] !== 0x50) throw new PpmParseError('not a PPM frame')
    if (h.length === 2 && h[1] !== 0x36) throw new PpmParseError('not a binary RGB (P6) frame')
    // header = "P6" ws width ws height ws maxval ONE-ws
    const last = h[h.length - 1]
    if (h.length < 3 || !isSpace(last)) return
    const fields = String.fromCharCode(...h.slice(2)).trim().split(/\s+/)
    if (fields.length < 3 || fields[0] === '') return
    // the whitespace ending maxval has just been consumed
    const [w, ht, maxval] = fields.map((f) => (/^\d+$/.test(f) ? Number(f) : NaN))
    if (!(w > 0 && ht > 0) || maxval !== 255) throw new PpmParseError(`unsupported PPM header "${fields.join(' ')}"`)
    if (w > this.maxWidth || ht > this.maxHeight) {
      throw new PpmParseError(`decoded frame ${w}x${ht} is over the limit ${this.maxWidth}x${this.maxHeight}`)
    }
    this.header = []
    this.frame = { width: w, height: ht, data: new Uint8Array(w * ht * 3) }
  }
}
