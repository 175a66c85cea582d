// Decides what an upload really is from its first bytes. File names, data: URI types and declared MIME types are
// never consulted: the ImageTragick MVG "jpg", an SVG, an HLS playlist named .mp4 or an AVIF all stop here with 415.
import { ServiceError } from '../../errors.ts'

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif'
export type VideoFormat = 'mp4' | 'webm' | 'avi'
export type SniffedMedia = { kind: 'image'; format: ImageFormat } | { kind: 'video'; format: VideoFormat }

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
// ISO-BMFF major brands that are still images (AVIF/HEIF): refused, they must not pass as MP4 either.
const STILL_IMAGE_BRANDS = new Set(['avif', 'avis', 'heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'mif1', 'msf1', 'jpeg', 'jxl '])
// QuickTime files without `ftyp` start with one of these atoms.
const QUICKTIME_ATOMS = new Set(['moov', 'mdat', 'wide', 'free', 'skip', 'pnot'])

function ascii(buf: Uint8Array, start: number, end: number): string {
  if (buf.length < end) return ''
  return String.fromCharCode(...buf.subarray(start, end))
}

function startsWith(buf: Uint8Array, bytes: number[]): boolean {
  return buf.length >= bytes.length && bytes.every((b, i) => buf[i] === b)
}

// Returns the sniffed format, or null when the bytes are not one of the allowed containers.
export function sniffMedia(buf: Uint8Array): SniffedMedia | null {
  if (startsWith(buf, [0xff, 0xd8, 0xff])) return { kind: 'image', format: 'jpeg' }
  if (startsWith(buf, PNG_SIGNATURE)) return { kind: 'image', format: 'png' }
  const six = ascii(buf, 0, 6)
  if (six === 'GIF87a' || six === 'GIF89a') return { kind: 'image', format: 'gif' }
  if (ascii(buf, 0, 4) === 'RIFF') {
    const sub = ascii(buf, 8, 12)
    if (sub === 'WEBP') return { kind: 'image', format: 'webp' }
    if (sub === 'AVI ') return { kind: 'video', format: 'avi' }
    return null
  }
  if (startsWith(buf, [0x1a, 0x45, 0xdf, 0xa3])) return { kind: 'video', format: 'webm' }
  const box = ascii(buf, 4, 8)
  if (box === 'ftyp') {
    return STILL_IMAGE_BRANDS.has(ascii(buf, 8, 12)) ? null : { kind: 'video', format: 'mp4' }
  }
  if (QUICKTIME_ATOMS.has(box)) return { kind: 'video', format: 'mp4' }
  return null
}

// Sniffs and checks the result against the part's declared type and the allowed video containers.
export function sniffPart(buf: Uint8Array, declared: 'image' | 'video', allowedVideo: readonly VideoFormat[]): SniffedMedia {
  if (buf.length === 0) throw new ServiceError('media_invalid', `${declared} is empty`)
  const s = sniffMedia(buf)
  if (s === null) {
    throw new ServiceError('unsupported_media_type', `${declared} content is not an allowed format (JPEG, PNG, WebP, GIF; MP4/MOV, WebM/MKV${allowedVideo.includes('avi') ? ', AVI' : ''})`)
  }
  if (s.kind !== declared) {
    throw new ServiceError('unsupported_media_type', `part declared as ${declared} contains ${s.kind} data (${s.format})`)
  }
  if (s.kind === 'video' && !allowedVideo.includes(s.format)) {
    throw new ServiceError('unsupported_media_type', `video container ${s.format} is not allowed on this server`)
  }
  return s
}

// The ffmpeg demuxer forced for each sniffed container (never ffmpeg's own probing).
export const DEMUXER: Record<VideoFormat, string> = { mp4: 'mov', webm: 'matroska', avi: 'avi' }
