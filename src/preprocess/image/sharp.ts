// The only file that imports sharp. Decodes an untrusted, already-sniffed image into 8-bit sRGB RGB: header first
// (format and pixel limit checked before any pixel is decoded), then a strict decode (every libvips warning, e.g.
// truncation or a bad CRC, is an error), EXIF orientation applied, first frame only, alpha flattened on white.
// It also encodes the CLI report charts as PNG (encodePng at the end).
import sharp, { type Metadata, type SharpOptions } from 'sharp'
import { ServiceError } from '../../errors.ts'
import type { RgbImage } from './rgb.ts'
import type { ImageFormat } from '../media/sniff.ts'

// Every other libvips loader (SVG, PDF, AVIF/HEIF, TIFF, magick, ...) is blocked process-wide, so even a
// mis-sniffed buffer cannot reach them. "Nsgif" is libvips' GIF loader.
sharp.block({ operation: ['VipsForeignLoad'] })
sharp.unblock({ operation: ['VipsForeignLoadJpeg', 'VipsForeignLoadPng', 'VipsForeignLoadWebp', 'VipsForeignLoadNsgif'] })
// The service never decodes the same buffer twice through libvips (our own embedding cache sits above this).
sharp.cache(false)

export interface ImageDecodeLimits {
  maxPixels: number // width × height of the first frame, from the header
  timeoutSeconds: number // libvips processing time per decode
}

export interface ImageHeader {
  format: ImageFormat
  width: number // as displayed (EXIF orientation applied)
  height: number
  sixteenBit: boolean
  grey: boolean // one colour channel (with or without alpha)
  alpha: boolean
}

function inputOptions(limits: ImageDecodeLimits): SharpOptions {
  return {
    failOn: 'warning',
    limitInputPixels: limits.maxPixels,
    limitInputChannels: 4,
    pages: 1,
    sequentialRead: true,
    // The trainer decodes with PIL, which ignores embedded ICC profiles; applying them here would move pixels by
    // ~12 levels on a profiled photo (measured on Landscape_6.jpg) and break parity.
    ignoreIcc: true,
  }
}

function mapSharpError(err: unknown): ServiceError {
  const msg = err instanceof Error ? err.message : String(err)
  if (/pixel limit|channel limit/i.test(msg)) return new ServiceError('media_limit_exceeded', `image: ${msg}`)
  if (/timeout/i.test(msg)) return new ServiceError('media_limit_exceeded', 'image: decode time limit exceeded')
  return new ServiceError('media_invalid', `image could not be decoded: ${msg.split('\n')[0]}`)
}

// Reads only the header. Throws media_limit_exceeded for images over the pixel limit (the 280 MP JPEG or the
// 225000² PNG bomb are refused here, in milliseconds, without allocating their pixels).
export async function readImageHeader(buf: Uint8Array, expected: ImageFormat, limits: ImageDecodeLimits): Promise<ImageHeader> {
  let meta: Metadata
  try {
    meta = await sharp(buf, inputOptions(limits)).metadata()
  } catch (err) {
    throw mapSharpError(err)
  }
  if (meta.format !== expected) {
    throw new ServiceError('unsupported_media_type', `image content is ${meta.format ?? 'unknown'}, expected ${expected}`)
  }
  const w = meta.width ?? 0
  const h = meta.pageHeight ?? meta.height ?? 0
  if (!(w > 0 && h > 0)) throw new ServiceError('media_invalid', 'image has no dimensions')
  if (w * h > limits.maxPixels) {
    throw new ServiceError('media_limit_exceeded', `image is ${w}x${h} pixels, over the limit of ${limits.maxPixels} pixels`)
  }
  const swapped = (meta.orientation ?? 1) >= 5
  const sixteenBit = meta.depth === 'ushort'
  const grey = (meta.channels ?? 3) - (meta.hasAlpha ? 1 : 0) === 1
  return { format: expected, width: swapped ? h : w, height: swapped ? w : h, sixteenBit, grey, alpha: meta.hasAlpha === true }
}

// 8 bits per channel the way PIL gets there: 16-bit colour or alpha images keep the high byte (PIL's PNG
// unpackers), 16-bit grey without alpha is rounded v/257 (the trainer's I;16 path).
function to8bit(data: Uint16Array, greyNoAlpha: boolean): Uint8Array {
  const out = new Uint8Array(data.length)
  if (greyNoAlpha) for (let i = 0; i < data.length; i++) out[i] = Math.floor(data[i] / 257 + 0.5)
  else for (let i = 0; i < data.length; i++) out[i] = data[i] >> 8
  return out
}

// RGBA over opaque white, bit for bit as PIL's Image.alpha_composite (libImaging/AlphaComposite.c, 7-bit
// fixed point), which the trainer uses; libvips' flatten rounds differently (up to 1 level on half the pixels).
function flattenOnWhite(rgba: Uint8Array, pixels: number): Uint8Array {
  const PRECISION_BITS = 7
  const out = new Uint8Array(pixels * 3)
  for (let p = 0; p < pixels; p++) {
    const a = rgba[p * 4 + 3]
    for (let c = 0; c < 3; c++) {
      const src = rgba[p * 4 + c]
      if (a === 0) {
        out[p * 3 + c] = 255
        continue
      }
      // dst = (255, 255, 255, 255): blend = 255·(255 − a), outa255 = a·255 + blend
      const outa255 = a * 255 + 255 * (255 - a)
      const coef1 = Math.floor((a * 255 * 255 * (1 << PRECISION_BITS)) / outa255)
      const coef2 = 255 * (1 << PRECISION_BITS) - coef1
      const tmp = src * coef1 + 255 * coef2 + (0x80 << PRECISION_BITS)
      out[p * 3 + c] = (((tmp >> 8) + tmp) >> 8) >> PRECISION_BITS
    }
  }
  return out
}

/** `header`: from readImageHeader when the caller already has it (the media path reads it first to reserve
 *  decode memory). */
export async function decodeImage(buf: Uint8Array, expected: ImageFormat, limits: ImageDecodeLimits, header?: ImageHeader): Promise<RgbImage> {
  header ??= await readImageHeader(buf, expected, limits)
  // 16-bit colour or alpha images go straight to 8 bits inside libvips: its 16->8 conversion keeps the high byte,
  // which is PIL's (checked on the 16-bit fixtures), and the decoded image then holds half the memory. Only
  // 16-bit grey without alpha needs PIL's v/257 rounding (to8bit).
  const wide = header.sixteenBit && header.grey && !header.alpha
  try {
    const { data, info } = await sharp(buf, { ...inputOptions(limits), autoOrient: true })
      .timeout({ seconds: limits.timeoutSeconds })
      .toColourspace(wide ? 'rgb16' : 'srgb')
      .raw({ depth: wide ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true })
    const pixels = info.width * info.height
    const channels = info.channels
    if (channels !== 3 && channels !== 4) throw new Error(`unexpected decoded layout ${info.width}x${info.height}x${channels}`)
    if (data.length !== pixels * channels * (wide ? 2 : 1)) throw new Error('decoded size mismatch')
    // the result is always a buffer of our own (it may be transferred to a worker thread, which libvips' memory
    // is not): to8bit and flattenOnWhite allocate one, plain RGB is copied
    if (wide) return { width: info.width, height: info.height, data: to8bit(new Uint16Array(data.buffer, data.byteOffset, data.length / 2), channels === 3) }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.length)
    return { width: info.width, height: info.height, data: channels === 4 ? flattenOnWhite(bytes, pixels) : new Uint8Array(bytes) }
  } catch (err) {
    throw err instanceof ServiceError ? err : mapSharpError(err)
  }
}

/** 8-bit RGB pixels (row-major, top row first) as a PNG file, with libvips' encoder (the CLI's report charts). */
export async function encodePng(width: number, height: number, rgb: Uint8Array): Promise<Buffer> {
  if (rgb.length !== width * height * 3) throw new Error(`encodePng: expected ${width * height * 3} bytes, got ${rgb.length}`)
  return sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer()
}
