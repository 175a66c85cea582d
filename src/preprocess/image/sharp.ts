// The only file that imports sharp. Decodes an untrusted, already-sniffed image into 8-bit sRGB RGB: header first
// (pixel limit checked before any pixel is decoded; read in JavaScript by header-probe.ts, with libvips only when
// the probe cannot follow the header, so an image costs one libvips pipeline), then a strict decode (every libvips warning, e.g.
// truncation or a bad CRC, is an error), EXIF orientation applied, first frame only, alpha flattened on white,
// CMYK JPEGs converted with PIL's formula (as the trainer's PIL decode does, not through a colour profile); or,
// for models whose preprocess.image.decode is `published`, exactly PIL's convert('RGB') (decodePublished).
// It also encodes the CLI report charts as PNG and renders their labels (encodePng, renderLabelCoverage at the end).
import sharp, { type Metadata, type SharpOptions } from 'sharp'
import { ServiceError } from '../../errors.ts'
import type { RgbImage } from './rgb.ts'
import type { ImageFormat } from '../media/sniff.ts'
import { probeImageHeader, type DecodePlan } from './header-probe.ts'

export type { DecodePlan }

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
  cmyk: boolean
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
  return { format: expected, width: swapped ? h : w, height: swapped ? w : h, sixteenBit, grey, alpha: meta.hasAlpha === true, cmyk: meta.space === 'cmyk' }
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

// PIL's cmyk2rgb (libImaging/Convert.c, Pillow 9.4): R = CLIP8(nk − MULDIV255(C, nk)), nk = 255 − K, no ICC.
function cmykToRgbPil(cmyk: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3)
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - cmyk[p * 4 + 3]
    for (let c = 0; c < 3; c++) {
      const tmp = cmyk[p * 4 + c] * nk + 128
      out[p * 3 + c] = Math.max(0, nk - (((tmp >> 8) + tmp) >> 8))
    }
  }
  return out
}

/**
 * decode = published: what the published encode_img does, `Image.open(path).convert('RGB')` and nothing else
 * (Pillow 9.4 measured, published-pipeline-spec §5): EXIF orientation ignored (stored pixel order), alpha
 * dropped (not flattened: a transparent pixel keeps its colour), 16-bit grey without alpha clipped at 255 (PIL
 * opens it as mode I and convert clips), 16-bit colour / grey+alpha: the high byte, CMYK: PIL's naive formula
 * on the decoder's CMYK (libvips and PIL both un-invert Adobe JPEGs). Measured equal to Pillow 9.4.0 byte for
 * byte on the shared fixtures (EXIF-6 JPEG, 16-bit grey+alpha, 16-bit RGBA, CMYK JPEG, grey JPEG, WebP) and on
 * RGBA, LA, palette+tRNS and 16-bit grey PNGs. Known difference: a GIF's transparent pixels are black here
 * (libvips) and the palette colour of the transparent index in PIL.
 */
async function decodePublished(buf: Uint8Array, plan: DecodePlan, limits: ImageDecodeLimits): Promise<RgbImage> {
  if (plan.cmyk) return decodeCmyk(buf, limits, false)
  const { data, width, height, channels: ch } = await decodeRaw(buf, limits, false, plan.sixteenBit)
  const pixels = width * height
  const out = new Uint8Array(pixels * 3)
  if (plan.sixteenBit) {
    const v = new Uint16Array(data.buffer, data.byteOffset, data.length / 2)
    const greyNoAlpha = plan.greyNoAlpha
    for (let p = 0; p < pixels; p++) {
      for (let c = 0; c < 3; c++) {
        const x = v[p * ch + c]
        out[p * 3 + c] = greyNoAlpha ? Math.min(x, 255) : x >> 8
      }
    }
  } else {
    for (let p = 0; p < pixels; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = data[p * ch + c]
  }
  return { width, height, data: out }
}

// A CMYK JPEG the way PIL converts it (both decode modes: the trainer's load_image is exif_transpose, then the same
// convert('RGB')): libvips hands over the decoder's CMYK untouched (pipelineColourspace keeps it out of its
// profile-based CMYK -> sRGB conversion, which moved pixels by 6.9 % of the range against PIL and cost 10x the
// decode time through lcms), cmykToRgbPil does the rest. The per-pixel formula commutes with the EXIF rotation.
async function decodeCmyk(buf: Uint8Array, limits: ImageDecodeLimits, autoOrient: boolean): Promise<RgbImage> {
  const { data, info } = await sharp(buf, { ...inputOptions(limits), autoOrient })
    .timeout({ seconds: limits.timeoutSeconds })
    .pipelineColourspace('cmyk')
    .toColourspace('cmyk')
    .raw()
    .toBuffer({ resolveWithObject: true })
  if (info.channels !== 4) throw new Error(`unexpected CMYK layout ${info.channels} channels`)
  return { width: info.width, height: info.height, data: cmykToRgbPil(new Uint8Array(data.buffer, data.byteOffset, data.length), info.width * info.height) }
}

// RGB or RGBA at 8 bits, or 16 (`wide`, a 16-bit source only), EXIF orientation applied or not.
async function decodeRaw(buf: Uint8Array, limits: ImageDecodeLimits, autoOrient: boolean, wide: boolean) {
  const { data, info } = await sharp(buf, { ...inputOptions(limits), autoOrient })
    .timeout({ seconds: limits.timeoutSeconds })
    .toColourspace(wide ? 'rgb16' : 'srgb')
    .raw({ depth: wide ? 'ushort' : 'uchar' })
    .toBuffer({ resolveWithObject: true })
  if (info.channels !== 3 && info.channels !== 4) throw new Error(`unexpected decoded layout ${info.width}x${info.height}x${info.channels}`)
  if (data.length !== info.width * info.height * info.channels * (wide ? 2 : 1)) throw new Error('decoded size mismatch')
  return { data, width: info.width, height: info.height, channels: info.channels }
}

export type ImageDecodeMode = 'normalized' | 'published'

/** What decodeImage needs before it runs, and the pixels it will hold (width × height): from the header bytes
 *  (header-probe.ts), or from libvips' header read when the probe cannot follow them. Throws
 *  media_limit_exceeded for images over the pixel limit (the 280 MP JPEG, the 225000² PNG bomb) without
 *  allocating their pixels. */
export async function planImageDecode(buf: Uint8Array, expected: ImageFormat, limits: ImageDecodeLimits): Promise<DecodePlan> {
  const probed = probeImageHeader(buf, expected)
  if (!probed) {
    const h = await readImageHeader(buf, expected, limits)
    return { format: h.format, width: h.width, height: h.height, sixteenBit: h.sixteenBit, greyNoAlpha: h.grey && !h.alpha, cmyk: h.cmyk }
  }
  if (probed.width * probed.height > limits.maxPixels) {
    throw new ServiceError('media_limit_exceeded', `image is ${probed.width}x${probed.height} pixels, over the limit of ${limits.maxPixels} pixels`)
  }
  return probed
}

/** `plan`: from planImageDecode when the caller already has it (the media path plans first to reserve decode
 *  memory). */
export async function decodeImage(
  buf: Uint8Array,
  expected: ImageFormat,
  limits: ImageDecodeLimits,
  mode: ImageDecodeMode = 'normalized',
  plan?: DecodePlan,
): Promise<RgbImage> {
  plan ??= await planImageDecode(buf, expected, limits)
  try {
    if (mode === 'published') return await decodePublished(buf, plan, limits)
    if (plan.cmyk) return await decodeCmyk(buf, limits, true)
    // 16-bit colour or alpha images go straight to 8 bits inside libvips: its 16->8 conversion keeps the high
    // byte, which is PIL's (checked on the 16-bit fixtures), and the decoded image then holds half the memory.
    // Only 16-bit grey without alpha needs PIL's v/257 rounding (to8bit).
    const wide = plan.sixteenBit && plan.greyNoAlpha
    const { data, width, height, channels } = await decodeRaw(buf, limits, true, wide)
    const pixels = width * height
    // the result is always a buffer of our own (it may be transferred to a worker thread, which libvips' memory
    // is not): to8bit and flattenOnWhite allocate one, plain RGB is copied
    if (wide) return { width, height, data: to8bit(new Uint16Array(data.buffer, data.byteOffset, data.length / 2), channels === 3) }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.length)
    return { width, height, data: channels === 4 ? flattenOnWhite(bytes, pixels) : new Uint8Array(bytes) }
  } catch (err) {
    throw err instanceof ServiceError ? err : mapSharpError(err)
  }
}

/** 8-bit RGB pixels (row-major, top row first) as a PNG file, with libvips' encoder (the CLI's report charts). */
export async function encodePng(width: number, height: number, rgb: Uint8Array): Promise<Buffer> {
  if (rgb.length !== width * height * 3) throw new Error(`encodePng: expected ${width * height * 3} bytes, got ${rgb.length}`)
  return sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer()
}

// Antialiased coverage (0..255) of one line of text in a TrueType file, cropped to its ink box (libvips' text
// operation: Pango + FreeType + cairo), for the published video labels (video/published.ts blends it as PIL does).
// libvips' fontconfig is pointed at label-fontconfig.conf before its first use: unhinted grey antialiasing, which
// is what PIL draws (with the default hinting 1/3 of the ink pixels differ).
let fontconfigSet = false
export async function renderTextCoverage(text: string, fontFile: string, family: string, sizePx: number): Promise<{ width: number; height: number; data: Uint8Array }> {
  if (!fontconfigSet) {
    process.env.FONTCONFIG_FILE = decodeURIComponent(new URL('label-fontconfig.conf', import.meta.url).pathname)
    fontconfigSet = true
  }
  const markup = text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  // dpi 72: one point is one pixel, so the size is PIL's pixel size; the comma ends the family name
  const { data, info } = await sharp({ text: { text: markup, font: `${family}, ${sizePx}`, fontfile: fontFile, dpi: 72 } })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true })
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) }
}

/** Antialiased coverage of one line of text in a system font (fontconfig's default configuration; DejaVu Sans is
 *  what scripts/install-deps.sh installs), for the CLI report charts' tick labels, axis titles and legends. Pango's
 *  text operation, not an image loader: the loaders blocked above stay blocked. */
export async function renderLabelCoverage(text: string, sizePx: number, family = 'DejaVu Sans'): Promise<{ width: number; height: number; data: Uint8Array }> {
  const markup = text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  const { data, info } = await sharp({ text: { text: markup, font: `${family}, ${sizePx}`, dpi: 72 } })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true })
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) }
}
