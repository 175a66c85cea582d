// What the image decode needs to know before libvips runs, read from the first bytes in JavaScript: the stored
// size (the media path reserves decode memory by width × height and refuses images over the pixel limit before
// any pixel exists) and the three facts that pick the decode pipeline (16-bit, grey without alpha, CMYK). With it
// an image is decoded in one libvips pipeline instead of a header read (sharp metadata) and then the decode.
// Nothing here is trusted beyond that: libvips still enforces the pixel limit itself (limitInputPixels) and
// refuses anything malformed while decoding. A header this parser does not follow (a 12-bit JPEG, a marker
// segment running past the end, an unknown WebP chunk) returns null, and sharp.ts reads it with libvips as before.
// test/preprocess/header-probe.test.ts holds it to sharp's metadata on every fixture and generated variants.
import type { ImageFormat } from '../media/sniff.ts'

export interface DecodePlan {
  format: ImageFormat
  width: number // stored (before EXIF orientation): only the area is used
  height: number
  sixteenBit: boolean
  greyNoAlpha: boolean // one colour channel and no alpha (matters for 16-bit sources only)
  cmyk: boolean
}

const u16be = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!
const u32be = (b: Uint8Array, o: number) => b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!)
const u16le = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8)
const u24le = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)
const tag = (b: Uint8Array, o: number) => String.fromCharCode(b[o]!, b[o + 1]!, b[o + 2]!, b[o + 3]!)

function png(b: Uint8Array): DecodePlan | null {
  if (b.length < 33 || tag(b, 12) !== 'IHDR' || u32be(b, 8) !== 13) return null
  const width = u32be(b, 16)
  const height = u32be(b, 20)
  const depth = b[24]!
  const colourType = b[25]!
  if (![0, 2, 3, 4, 6].includes(colourType)) return null
  // a tRNS chunk (before the first IDAT) gives grey, RGB and palette images an alpha channel in libvips
  let trns = false
  let off = 33
  for (;;) {
    if (off + 8 > b.length) return null
    const type = tag(b, off + 4)
    if (type === 'IDAT' || type === 'IEND') break
    if (type === 'tRNS') trns = true
    off += 12 + u32be(b, off)
  }
  return { format: 'png', width, height, sixteenBit: depth === 16, greyNoAlpha: colourType === 0 && !trns, cmyk: false }
}

function jpeg(b: Uint8Array): DecodePlan | null {
  let p = 2
  while (p + 4 <= b.length) {
    if (b[p] !== 0xff) return null
    while (b[p] === 0xff && p < b.length) p++
    const m = b[p++]!
    if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) continue // no length
    if (m === 0xd9 || m === 0xda || p + 2 > b.length) return null // image data before any frame header
    const len = u16be(b, p)
    const sof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc
    if (sof) {
      if (p + 8 > b.length || b[p + 2] !== 8) return null // 12/16-bit JPEGs: libvips decides
      const components = b[p + 7]!
      if (components !== 1 && components !== 3 && components !== 4) return null
      return { format: 'jpeg', width: u16be(b, p + 5), height: u16be(b, p + 3), sixteenBit: false, greyNoAlpha: components === 1, cmyk: components === 4 }
    }
    p += len
  }
  return null
}

function webp(b: Uint8Array): DecodePlan | null {
  if (b.length < 30) return null
  const chunk = tag(b, 12)
  const plan = (width: number, height: number): DecodePlan => ({ format: 'webp', width, height, sixteenBit: false, greyNoAlpha: false, cmyk: false })
  if (chunk === 'VP8X') return plan(u24le(b, 24) + 1, u24le(b, 27) + 1)
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) return null
    const bits = u16le(b, 21) + u16le(b, 23) * 0x10000
    return plan((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1)
  }
  if (chunk === 'VP8 ') {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null
    return plan(u16le(b, 26) & 0x3fff, u16le(b, 28) & 0x3fff)
  }
  return null
}

function gif(b: Uint8Array): DecodePlan | null {
  if (b.length < 10) return null
  return { format: 'gif', width: u16le(b, 6), height: u16le(b, 8), sixteenBit: false, greyNoAlpha: false, cmyk: false }
}

/** The decode plan from the header bytes of an image already sniffed as `format`, or null (ask libvips). */
export function probeImageHeader(buf: Uint8Array, format: ImageFormat): DecodePlan | null {
  const plan = format === 'png' ? png(buf) : format === 'jpeg' ? jpeg(buf) : format === 'webp' ? webp(buf) : gif(buf)
  return plan && plan.width > 0 && plan.height > 0 ? plan : null
}
