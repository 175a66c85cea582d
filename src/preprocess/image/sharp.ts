// The only file that imports sharp. Decodes an untrusted, already-sniffed image into 8-bit sRGB RGB: header first
// (format and pixel limit checked before any pixel is decoded), then a strict decode (every libvips warning, e.g.
// truncation or a bad CRC, is an error), EXIF orientation applied, first frame only, alpha flattened on white.
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
  return { format: expected, width: swapped ? h : w, height: swapped ? w : h }
}

export async function decodeImage(buf: Uint8Array, expected: ImageFormat, limits: ImageDecodeLimits): Promise<RgbImage> {
  await readImageHeader(buf, expected, limits)
  try {
    const { data, info } = await sharp(buf, { ...inputOptions(limits), autoOrient: true })
      .timeout({ seconds: limits.timeoutSeconds })
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true })
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`unexpected decoded layout ${info.width}x${info.height}x${info.channels}`)
    }
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) }
  } catch (err) {
    throw err instanceof ServiceError ? err : mapSharpError(err)
  }
}
