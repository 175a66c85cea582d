// Video path: PPM stream parsing, frame selection, the ixc_stack geometry of models/README.md, and real/hostile
// files through the hardened ffmpeg runner (system ffmpeg; skipped where it is missing).
import t from 'tap'
import { skipUnless } from '../helpers/tools.ts'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { hasFfmpeg, readFixture as read } from './helpers/fixtures.ts'
import { PpmStreamParser, PpmParseError } from '../../src/preprocess/video/ppm.ts'
import { layoutIxcStack, selectFrameIndices, resizeLongSide, roundHalfEven, type VideoPreprocessParams } from '../../src/preprocess/video/layout.ts'
import { preprocessVideo } from '../../src/preprocess/video/video.ts'
import { extractFrames, liveFfmpegChildren } from '../../src/preprocess/video/ffmpeg.ts'
import { defaultMediaConfig } from '../../src/preprocess/media/media-config.ts'
import { withRequestTempDir, liveTempDirs, TEMP_PREFIX } from '../../src/preprocess/media/temp-dir.ts'
import { sniffMedia } from '../../src/preprocess/media/sniff.ts'
import { createRgb, type RgbImage } from '../../src/preprocess/image/rgb.ts'
import type { ImagePreprocessParams } from '../../src/preprocess/image/hd-transform.ts'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'


const ONE = '11111'
const font = { width: 5, height: 7, glyphs: { '<': ['00010', '00100', '01000', '10000', '01000', '00100', '00010'], I: [ONE, '00100', '00100', '00100', '00100', '00100', ONE], '0': ['01110', '10001', '10011', '10101', '11001', '10001', '01110'] } }
const video: VideoPreprocessParams = { fps: 1, max_frames: 8, frame_long_side: 224, layout: 'ixc_stack', header_height: 20, gap: 10, line_width: 2, label_scale: 2, label_font: font }
const image: ImagePreprocessParams = {
  tile_size: 112, patch_size: 14, hd_num: 4, hd_num_multi: 2, resize: 'pil_bilinear', pad_color: [255, 255, 255],
  pad_side: 'bottom', transpose_portrait: true, mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711],
}
const tempRoot = mkdtempSync(join(tmpdir(), 'video-test-'))
const cfg = defaultMediaConfig({ tempDir: tempRoot })
t.teardown(() => rmSync(tempRoot, { recursive: true, force: true }))

function ppm(w: number, h: number, v: number): Buffer {
  return Buffer.concat([Buffer.from(`P6\n${w} ${h}\n255\n`), Buffer.alloc(w * h * 3, v)])
}

t.test('PPM stream parser: frames split anywhere across chunks', async (t) => {
  const stream = Buffer.concat([ppm(3, 2, 7), ppm(1, 1, 9), ppm(2, 4, 1)])
  for (const step of [1, 5, 17, stream.length]) {
    const got: RgbImage[] = []
    const p = new PpmStreamParser((f) => got.push(f), 100, 100)
    for (let i = 0; i < stream.length; i += step) p.push(stream.subarray(i, i + step))
    p.end()
    t.same(got.map((f) => [f.width, f.height, f.data[0]]), [[3, 2, 7], [1, 1, 9], [2, 4, 1]], `chunk ${step}`)
  }
  t.throws(() => new PpmStreamParser(() => {}, 100, 100).push(Buffer.from('P5\n1 1\n255\n')), { name: 'PpmParseError' })
  t.throws(() => new PpmStreamParser(() => {}, 100, 100).push(ppm(101, 1, 0)), { name: 'PpmParseError' }, 'frame over the limit refused from its header')
  const cut = new PpmStreamParser(() => {}, 100, 100)
  cut.push(ppm(4, 4, 0).subarray(0, 20))
  t.throws(() => cut.end(), { name: 'PpmParseError' }, 'cut-off frame')
})

t.test('frame selection: floor(i·n/(max_frames+1))', async (t) => {
  t.same(selectFrameIndices(5, 8), [0, 1, 2, 3, 4])
  t.same(selectFrameIndices(8, 8), [0, 1, 2, 3, 4, 5, 6, 7])
  t.same(selectFrameIndices(30, 8), [0, 3, 6, 10, 13, 16, 20, 23])
  t.same(selectFrameIndices(9, 8), [0, 1, 2, 3, 4, 5, 6, 7])
})

t.test('long-side resize keeps the aspect as the contract writes it', async (t) => {
  const f = (w: number, h: number) => resizeLongSide(createRgb(w, h, 0), 224)
  t.same([f(640, 360).width, f(640, 360).height], [224, 126])
  t.same([f(360, 640).width, f(360, 640).height], [126, 224])
  t.same([f(8, 8).width, f(8, 8).height], [224, 224])
  t.same([f(333, 100).width, f(333, 100).height], [224, 67])
  // the short side uses Python's round (half to even), like the trainer
  t.same([roundHalfEven(126.5), roundHalfEven(127.5), roundHalfEven(2.4999), roundHalfEven(0.5)], [126, 128, 2, 0])
  t.same([f(448, 1).height, f(1, 448).width], [1, 1], 'never below one pixel')
})

function px(img: RgbImage, x: number, y: number): number[] {
  const i = (y * img.width + x) * 3
  return [img.data[i], img.data[i + 1], img.data[i + 2]]
}

t.test('ixc_stack geometry: vertical stack for landscape frames', async (t) => {
  const frames = [createRgb(30, 20, 100), createRgb(40, 20, 150)]
  const c = layoutIxcStack(frames, video)
  // width = max w; height = (20+20) + (20+20) + one gap of 10, no trailing gap
  t.same([c.width, c.height], [40, 90])
  t.same(px(c, 0, 20), [100, 100, 100], 'frame 0 below its band')
  t.same(px(c, 35, 20), [255, 255, 255], 'narrower frame is left-aligned on white')
  // line rows: y0 + H + h + (gap - lw)//2 = 0 + 20 + 20 + 4 = 44, 45
  t.same([px(c, 0, 43), px(c, 0, 44), px(c, 39, 45), px(c, 0, 46)], [[255, 255, 255], [0, 0, 0], [0, 0, 0], [255, 255, 255]])
  t.same(px(c, 0, 70), [150, 150, 150], 'frame 1 at y = 20+20+10+20')
  // label "<IMAGE 1>": '<' glyph row 0 col 3 inked at (2 + 3·2, 2) in band 0; 'I' starts at x = 2 + 1·6·2 = 14
  t.same(px(c, 8, 2), [0, 0, 0], "'<' ink")
  t.same(px(c, 7, 2), [255, 255, 255], "'<' no ink at column 2")
  t.same(px(c, 14, 2), [0, 0, 0], "'I' top bar")
  t.same(px(c, 14, 50 + 2), [0, 0, 0], "second band's 'I'")
})

t.test('ixc_stack geometry: side by side for portrait frames', async (t) => {
  const frames = [createRgb(20, 30, 100), createRgb(20, 40, 150)]
  const c = layoutIxcStack(frames, video)
  t.same([c.width, c.height], [50, 60])
  t.same(px(c, 0, 20), [100, 100, 100])
  t.same(px(c, 0, 55), [255, 255, 255], 'shorter frame is top-aligned on white')
  t.same([px(c, 23, 0), px(c, 24, 0), px(c, 25, 59), px(c, 26, 0)], [[255, 255, 255], [0, 0, 0], [0, 0, 0], [255, 255, 255]])
  t.same(px(c, 30, 20), [150, 150, 150], 'frame 1 at x = 20 + 10')
})

async function run(path: string, over: Partial<typeof cfg> = {}) {
  const bytes = read(path)
  const s = sniffMedia(bytes)
  if (!s || s.kind !== 'video') throw new Error(`${path} is not a video`)
  return withRequestTempDir(tempRoot, (dir) => preprocessVideo(bytes, s.format, dir, video, image, { ...cfg, ...over }))
}

t.test('real videos become one laid-out tensor', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  // 224x224, 5 s -> 5 frames of 224x224 stacked: 5·(20+224) + 4·10 = 1260 tall -> short side to 112:
  // int(112·1260/224) = 630 long -> padded to 672 = 6 tiles
  const a = await run('video/real/llamafactory-mllm_demo_4.mp4')
  t.same([a.width, a.height, a.rows, a.cols], [112, 672, 6, 1])
  t.equal(a.tokens, (6 + 1) * 16 + 1 + 7 * 4)
  // 640x360, 30 s with audio -> 30 frames, 8 selected, 224x126 each: 8·146 + 70 = 1238 tall -> 112 wide,
  // int(112·1238/224) = 619 -> padded to 672
  const b = await run('video/real/fuzzcorpus-h264-aac-publicdomain-sample.mp4')
  t.same([b.width, b.height], [112, 672])
  // one-frame 8x8 WebM: the contract's first-frame fallback
  const c = await run('video/real/small-webm.webm')
  t.same([c.width, c.height], [112, 224])
  await t.rejects(run('video/real/small-Mpeg4.mp4'), { code: 'no_video_stream' })
})

t.test('limits: duration, dimensions, streams, wall clock (SIGKILL)', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const long = 'video/real/fuzzcorpus-h264-aac-publicdomain-sample.mp4'
  await t.rejects(run(long, { maxVideoDurationS: 10 }), { code: 'media_limit_exceeded', message: /30\.1 s, over the limit of 10 s/ })
  await t.rejects(run(long, { maxVideoWidth: 320 }), { code: 'media_limit_exceeded', message: /640x360/ })
  await t.rejects(run(long, { maxVideoStreams: 1 }), { code: 'media_limit_exceeded' })
  const t0 = Date.now()
  await t.rejects(run(long, { videoTimeoutS: 0.05 }), { code: 'media_limit_exceeded', message: /exceeded 50 ms/ })
  t.ok(Date.now() - t0 < 3000, 'killed at the deadline')
  t.equal(liveFfmpegChildren(), 0, 'no ffmpeg child left')
})

t.test('hostile videos are refused with specific codes and leak nothing', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  await t.rejects(run('video/hostile/fuzzcorpus-bug1079747.mp4'), { code: 'media_invalid' })
  await t.rejects(run('video/hostile/fuzzcorpus-0-timescale.mp4'), { code: 'media_invalid' })
  // The HLS-in-AVI payload, even with AVI explicitly allowed: the forced demuxer + format whitelist never opens the
  // playlist, so there is no video stream and nothing from /etc/passwd anywhere.
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n')[0]
  const err = await run('video/hostile/patt-read_passwd_bypass.mp4', { videoFormats: ['mp4', 'webm', 'avi'] }).then(() => null, (e) => e)
  t.equal(err?.code, 'no_video_stream')
  t.notMatch(String(err?.message), passwd.slice(0, 8))
  t.notMatch(String(err?.message), /root:/)
  // Bypass the probe and run the extraction argv itself on the payload (forced avi demuxer, file protocol only):
  // whatever comes out, frames or error text, holds no /etc/passwd bytes.
  const frames: RgbImage[] = []
  const extracted = await withRequestTempDir(tempRoot, async (dir) => {
    const file = join(dir, 'in.bin')
    writeFileSync(file, read('video/hostile/patt-read_passwd_bypass.mp4'))
    return extractFrames({ ffmpeg: 'ffmpeg', ffprobe: 'ffprobe' }, file, 'avi', dir, { fps: 1, frameCap: 100, timeoutMs: 10_000, maxWidth: 4096, maxHeight: 4096 }, (f) => frames.push(f))
  }).then((n) => ({ n, message: '' }), (e) => ({ n: 0, message: String(e?.message) }))
  const lines = readFileSync('/etc/passwd', 'utf8').split('\n').filter((l) => l.length > 8)
  t.notOk(lines.some((l) => extracted.message.includes(l)), `error text clean: ${extracted.message}`)
  for (const f of frames) t.notOk(Buffer.from(f.data).includes('root:x:0:0'), 'frame pixels hold no passwd text')
  t.equal(liveFfmpegChildren(), 0)
})

t.test('missing ffmpeg: 503 video_unavailable', async (t) => {
  await t.rejects(run('video/real/llamafactory-mllm_demo_4.mp4', { ffmpegPath: '/nonexistent/ffmpeg', ffprobePath: '/nonexistent/ffprobe' }), { code: 'video_unavailable' })
})

t.test('no temp dir or child process outlives the requests', async (t) => {
  t.equal(liveFfmpegChildren(), 0)
  t.equal(liveTempDirs(), 0)
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [])
})
