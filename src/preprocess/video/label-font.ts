// The few TrueType facts the published frame labels need (ixc_utils.frame2img draws `<IMAGE i>` with
// PIL's ImageFont.truetype(SimHei, 40) at the band's top-left, anchor "la"). libvips renders the text for us
// (image/sharp.ts) but returns only the ink box; PIL puts the pen's ascender line at the given point. So the ink
// box's offset from that point is computed here from the font file: the FreeType ascender (ceil of the scaled
// hhea ascender, what PIL anchors to), each glyph's glyf bounding box and hmtx advance, the family name for
// Pango. Plain TrueType (glyf) files only: SimHei and the shipped WenQuanYi Zen Hei Mono subset are; a CFF/OTF or
// a collection is refused.

export interface LabelFontFile {
  family: string
  unitsPerEm: number
  ascender: number // hhea, font units
  glyphs: Map<number, { advance: number; xMin: number; yMax: number; empty: boolean }> // by code point
}

function table(buf: Buffer, tag: string): number {
  const n = buf.readUInt16BE(4)
  for (let i = 0; i < n; i++) {
    const rec = 12 + i * 16
    if (buf.toString('latin1', rec, rec + 4) === tag) return buf.readUInt32BE(rec + 8)
  }
  throw new Error(`label font: no "${tag}" table`)
}

function familyName(buf: Buffer): string {
  const t = table(buf, 'name')
  const count = buf.readUInt16BE(t + 2)
  const strings = t + buf.readUInt16BE(t + 4)
  let mac = ''
  for (let i = 0; i < count; i++) {
    const r = t + 6 + i * 12
    const [platform, , , nameId, length, offset] = [0, 2, 4, 6, 8, 10].map((o) => buf.readUInt16BE(r + o))
    if (nameId !== 1) continue
    const raw = buf.subarray(strings + offset, strings + offset + length)
    if (platform === 3 || platform === 0) return Buffer.from(raw).swap16().toString('utf16le')
    if (platform === 1) mac = raw.toString('latin1')
  }
  if (mac) return mac
  throw new Error('label font: no family name')
}

// code point -> glyph id, from a format 4 or 12 Unicode subtable
function cmap(buf: Buffer, codePoints: number[]): Map<number, number> {
  const t = table(buf, 'cmap')
  const n = buf.readUInt16BE(t + 2)
  const out = new Map<number, number>()
  for (let i = 0; i < n; i++) {
    const platform = buf.readUInt16BE(t + 4 + i * 8)
    const encoding = buf.readUInt16BE(t + 6 + i * 8)
    if (!(platform === 0 || (platform === 3 && (encoding === 1 || encoding === 10)))) continue
    const s = t + buf.readUInt32BE(t + 8 + i * 8)
    const format = buf.readUInt16BE(s)
    for (const cp of codePoints) {
      if (out.has(cp)) continue
      if (format === 4) {
        const segX2 = buf.readUInt16BE(s + 6)
        const ends = s + 14
        const starts = ends + segX2 + 2
        const deltas = starts + segX2
        const ranges = deltas + segX2
        for (let k = 0; k < segX2; k += 2) {
          if (buf.readUInt16BE(ends + k) < cp) continue
          const start = buf.readUInt16BE(starts + k)
          if (start > cp) break
          const delta = buf.readInt16BE(deltas + k)
          const ro = buf.readUInt16BE(ranges + k)
          let g = 0
          if (ro === 0) g = (cp + delta) & 0xffff
          else {
            g = buf.readUInt16BE(ranges + k + ro + 2 * (cp - start))
            if (g !== 0) g = (g + delta) & 0xffff
          }
          if (g !== 0) out.set(cp, g)
          break
        }
      } else if (format === 12) {
        const groups = buf.readUInt32BE(s + 12)
        for (let k = 0; k < groups; k++) {
          const g = s + 16 + k * 12
          const start = buf.readUInt32BE(g)
          if (cp >= start && cp <= buf.readUInt32BE(g + 4)) {
            out.set(cp, buf.readUInt32BE(g + 8) + cp - start)
            break
          }
        }
      }
    }
  }
  return out
}

export function parseLabelFont(buf: Buffer, text: string): LabelFontFile {
  if (buf.length < 12 || buf.readUInt32BE(0) !== 0x00010000) throw new Error('label font: not a plain TrueType (glyf) font file')
  const head = table(buf, 'head')
  const unitsPerEm = buf.readUInt16BE(head + 18)
  const longLoca = buf.readInt16BE(head + 50) === 1
  const hhea = table(buf, 'hhea')
  const ascender = buf.readInt16BE(hhea + 4)
  const nMetrics = buf.readUInt16BE(hhea + 34)
  const hmtx = table(buf, 'hmtx')
  const loca = table(buf, 'loca')
  const glyf = table(buf, 'glyf')
  const cps = [...new Set(Array.from(text, (c) => c.codePointAt(0)!))]
  const ids = cmap(buf, cps)
  const glyphs: LabelFontFile['glyphs'] = new Map()
  for (const cp of cps) {
    const g = ids.get(cp)
    if (g === undefined) throw new Error(`label font has no glyph for ${JSON.stringify(String.fromCodePoint(cp))}`)
    const advance = buf.readUInt16BE(hmtx + 4 * Math.min(g, nMetrics - 1))
    const [off, next] = longLoca ? [buf.readUInt32BE(loca + 4 * g), buf.readUInt32BE(loca + 4 * g + 4)] : [2 * buf.readUInt16BE(loca + 2 * g), 2 * buf.readUInt16BE(loca + 2 * g + 2)]
    const empty = next === off
    glyphs.set(cp, { advance, xMin: empty ? 0 : buf.readInt16BE(glyf + off + 2), yMax: empty ? 0 : buf.readInt16BE(glyf + off + 8), empty })
  }
  return { family: familyName(buf), unitsPerEm, ascender, glyphs }
}

// Where the ink box of `text` starts relative to PIL's anchor point (left, ascender line) at `sizePx`, in whole
// pixels: PIL's baseline sits ceil(ascender·scale) below the anchor (FreeType rounds the scaled ascender up), the
// ink top max(yMax)·scale above the baseline, the ink left at the first inked glyph's xMin; floored, as Pango
// floors the ink box it renders into (measured: with this the coverage lands on PIL's pixels exactly).
export function labelInkOffset(font: LabelFontFile, text: string, sizePx: number): { dx: number; dy: number } {
  const scale = sizePx / font.unitsPerEm
  const baseline = Math.ceil(font.ascender * scale)
  let pen = 0
  let left = Infinity
  let top = -Infinity
  for (const ch of text) {
    const g = font.glyphs.get(ch.codePointAt(0)!)!
    if (!g.empty) {
      left = Math.min(left, pen + g.xMin * scale)
      top = Math.max(top, g.yMax * scale)
    }
    pen += g.advance * scale
  }
  if (!Number.isFinite(left)) return { dx: 0, dy: 0 }
  return { dx: Math.floor(left), dy: Math.floor(baseline - top) }
}
