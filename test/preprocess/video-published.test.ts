// The published video layout's arithmetic (video/published.ts) table-tested against the published ixc_utils
// formulas, its manifest section, the label font reader, and the published load_video's failure on a rate whose
// stride rounds to 0 (a 4xx here). The pixel parity with the trainer is video-published-parity.test.ts.
import t from 'tap'
import { skipUnless } from '../helpers/tools.ts'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { layoutPublished, publishedFrameSize, publishedVideoImage, publishedVideoTransform, samplePositions, checkPublishedParams, type LabelMask, type PublishedVideoParams } from '../../src/preprocess/video/published.ts'
import { labelInkOffset, parseLabelFont } from '../../src/preprocess/video/label-font.ts'
import { selectFilter } from '../../src/preprocess/video/ffmpeg.ts'
import { preprocessVideo } from '../../src/preprocess/video/video.ts'
import { mediaParamsOf } from '../../src/preprocess/media/params.ts'
import { defaultMediaConfig } from '../../src/preprocess/media/media-config.ts'
import { createRgb, type RgbImage } from '../../src/preprocess/image/rgb.ts'
import { preprocess } from './helpers/media-app.ts'
import { hasFfmpeg } from './helpers/fixtures.ts'

const FONT = join(import.meta.dirname, '..', '..', 'trainer', 'reward_trainer', 'assets', 'label-font.ttf')
const video: PublishedVideoParams = { layout: 'published', fps: 1, max_frames: 32, frame_long_side: 1120, header_height: 40, gap: 10, line_width: 2, label_font: { file: 'label-font.ttf', size: 40 } }
const noLabel: LabelMask = { width: 0, height: 0, data: new Uint8Array(0), dx: 0, dy: 0 }

t.test('load_video sampling: round half to even, range, the > 32 rule', async (t) => {
  t.same(samplePositions(25, 75, 1, 32), [0, 25, 50])
  t.same(samplePositions(30, 105, 1, 32), [0, 30, 60, 90])
  t.same(samplePositions(30000 / 1001, 120, 1, 32), [0, 30, 60, 90], '29.97 -> 30')
  t.same(samplePositions(24000 / 1001, 50, 1, 32), [0, 24, 48], '23.976 -> 24')
  t.same(samplePositions(12.5, 38, 1, 32), [0, 12, 24, 36], '12.5 -> 12 (half to even)')
  t.same(samplePositions(2.5, 5, 1, 32), [0, 2, 4], '2.5 -> 2')
  t.equal(samplePositions(0.5, 10, 1, 32), null, '0.5 -> 0: the published range() raises')
  t.equal(samplePositions(NaN, 1, 1, 32), null, 'avg_frame_rate 0/0: the published round() raises')
  const long = samplePositions(5, 200, 1, 32)!
  t.equal(long.length, 32)
  t.same(long.slice(0, 4), [0, 5, 10, 15])
  t.equal(long[31], 5 * Math.trunc(31 * (40 / 33)), 'positions[int(i * 40/33)]: the last kept is 185 of 195')
  t.same(samplePositions(1, 33, 1, 32)!.slice(-2), [30, 31], '33 positions: index 32 dropped')
})

t.test('frame2img sizes: int() truncation, strict w > h', async (t) => {
  t.same(publishedFrameSize(1920, 1080, 1120), [1120, 630])
  t.same(publishedFrameSize(640, 360, 1120), [1120, 630])
  t.same(publishedFrameSize(333, 1000, 1120), [Math.trunc(1120 * (333 / 1000)), 1120])
  t.same(publishedFrameSize(640, 640, 1120), [1120, 1120])
  t.same(publishedFrameSize(1000, 333, 1120), [1120, Math.trunc(1120 / (1000 / 333))], 'L / (w/h), not L·h/w')
  t.throws(() => publishedFrameSize(5000, 1, 1120), RangeError)
})

function rowIsBlack(img: RgbImage, y: number): boolean {
  for (let x = 0; x < img.width * 3; x++) if (img.data[y * img.width * 3 + x] !== 0) return false
  return true
}

t.test('frame2img layout: band, trailing gap, the line on gap rows 5 and 6, square side by side', async (t) => {
  const land = layoutPublished([createRgb(1120, 630, 7), createRgb(1120, 630, 7)], true, [noLabel, noLabel], video)
  t.same([land.width, land.height], [1120, 2 * (630 + 10 + 40)])
  t.ok(rowIsBlack(land, 40 + 630 + 5) && rowIsBlack(land, 40 + 630 + 6), 'line rows')
  t.notOk(rowIsBlack(land, 40 + 630 + 4) || rowIsBlack(land, 40 + 630 + 7))
  t.notOk(rowIsBlack(land, land.height - 5), 'no line after the last frame; its gap is there')
  t.equal(land.data[(40 * 1120) * 3], 7, 'frame below the band')
  const side = layoutPublished(Array.from({ length: 5 }, () => createRgb(1120, 1120, 9)), false, Array(5).fill(noLabel), video)
  t.same([side.width, side.height], [5650, 1160], 'five 640² frames -> 5650 x 1160 (spec)')
  t.equal(side.data[(100 * 5650 + 1125) * 3], 0, 'vertical line column 1125')
  t.equal(side.data[(100 * 5650 + 1126) * 3], 0)
  t.equal(side.data[(100 * 5650 + 1127) * 3], 255)
  // PIL's fill blend: DIV255(in · (255 − a)) with ink 0
  const mask: LabelMask = { width: 2, height: 1, data: new Uint8Array([255, 128]), dx: 3, dy: 4 }
  const one = layoutPublished([createRgb(100, 50, 200)], true, [mask], video)
  t.same([one.data[(4 * 100 + 3) * 3], one.data[(4 * 100 + 4) * 3]], [0, 127])
})

t.test('Video_transform: int(560 * (w / h)), pad to 560, spec token counts', async (t) => {
  const image = { ...preprocess.image, tile_size: 560 }
  for (const [[w, h], [W, H], tokens] of [[[1120, 6800], [560, 3920], 3361], [[1120, 21760], [560, 11200], 8821], [[5650, 1160], [2800, 560], 2441]] as const) {
    const out = publishedVideoTransform(createRgb(w, h, 0), image)
    t.same([out.width, out.height, out.tokens], [W, H, tokens], `${w}x${h}`)
  }
  const img = publishedVideoImage(createRgb(5650, 1160, 0), 560, [255, 255, 255])
  t.equal(img.data[(10 * 2800 + 2726) * 3], 0)
  t.equal(img.data[(10 * 2800 + 2727) * 3], 255, 'white from column int(560·5650/1160) = 2727')
})

t.test('label font: the shipped subset, PIL anchor offsets, refusals', async (t) => {
  const buf = readFileSync(FONT)
  const f = parseLabelFont(buf, '<IMAGE 0123456789>')
  t.equal(f.family, 'WenQuanYi Zen Hei Mono')
  t.same([f.unitsPerEm, f.ascender], [1024, 986])
  t.ok([...f.glyphs.values()].every((g) => g.advance === 512), 'half-width Latin, like SimHei')
  t.same(labelInkOffset(f, '<IMAGE 0>', 40), { dx: 2, dy: 8 }, 'measured against PIL (ink at row 8, column 2)')
  t.throws(() => parseLabelFont(buf, 'x'), /no glyph/)
  t.throws(() => parseLabelFont(Buffer.from('OTTO0000000000'), 'x'), /plain TrueType/)
  t.equal(selectFilter([0, 25]), 'select=eq(n\\,0)+eq(n\\,25)')
})

t.test('manifest: published params validated, the font must be a listed model file', async (t) => {
  const files = { 'label-font.ttf': { sha256: '0'.repeat(64), bytes: 1 } }
  t.equal(mediaParamsOf({ preprocess: { image: preprocess.image, video }, files }).video.layout, 'published')
  t.throws(() => mediaParamsOf({ preprocess: { image: preprocess.image, video }, files: {} }), /not listed in files/)
  t.throws(() => mediaParamsOf({ preprocess: { image: preprocess.image, video: { ...video, gap: 12 } }, files }), /gap must be 10/)
  t.throws(() => checkPublishedParams({ ...video, max_frames: 0 }))
  t.equal(mediaParamsOf({ preprocess }).video.layout, 'ixc_stack', 'the bitmap layout still parses')
})

t.test('a stride that rounds to 0 is refused with a 4xx, no ffmpeg left running', { skip: skipUnless(hasFfmpeg, 'ffmpeg missing') }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'video-pub-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'slow.mp4')
  const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=0.4', '-t', '10', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', file])
  t.equal(r.status, 0, String(r.stderr))
  await t.rejects(preprocessVideo(file, 'mp4', dir, video, { ...preprocess.image, tile_size: 560 }, defaultMediaConfig({ tempDir: dir }), undefined, undefined, dir), { code: 'media_invalid', message: /no sampling stride/ })
})
