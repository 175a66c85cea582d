// The published video layout (preprocess.video.layout "published") against the trainer's port of the published
// code (trainer/reward_trainer/media.py, run with Debian's Python through fixtures/video-published-reference.py)
// on real clips: ffmpeg testsrc clips at 25, 30 and 29.97 fps (H.264 with B-frames), one with more than 32
// sampled positions, a square and a portrait (12.5 fps: stride 12, half to even) one, and the shared fixtures.
// Frame indices must be equal; the canvas equal outside the 40-px label bands, and inside them within the stated
// bound: the text rasterisers are different code (libvips/Pango/cairo/FreeType 2.14 here, PIL 9.4/FreeType 2.12
// there), measured bit-identical for the shipped font with hinting off (image/label-fontconfig.conf), so the bound
// is 0; Video_transform exact on the same canvas; the whole service tensor equal to the trainer's.
// With CI=true a missing ffmpeg or Python is a failure, not a skip.
import t from 'tap'
import { skipUnless } from '../helpers/tools.ts'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fixtures, hasFfmpeg } from './helpers/fixtures.ts'
import { preprocess } from './helpers/media-app.ts'
import { extractFramesAt, probeVideo } from '../../src/preprocess/video/ffmpeg.ts'
import { layoutPublished, publishedVideoImage, resizePublishedFrame, samplePositions, type PublishedVideoParams } from '../../src/preprocess/video/published.ts'
import { preprocessVideo, publishedLabel } from '../../src/preprocess/video/video.ts'
import { defaultMediaConfig } from '../../src/preprocess/media/media-config.ts'
import { normalizeToTensor, type RgbImage } from '../../src/preprocess/image/rgb.ts'

const root = join(import.meta.dirname, '..', '..')
const FONT = join(root, 'trainer', 'reward_trainer', 'assets', 'label-font.ttf')
const PY = '/usr/bin/python3'
const hasPython = spawnSync(PY, ['-c', 'import PIL, numpy, torch'], { encoding: 'utf8' }).status === 0
const missing = !hasFfmpeg ? 'ffmpeg' : !hasPython ? `${PY} with PIL/numpy/torch` : null

// the published numbers (ixc_utils: num_frm 32, 560 * 2, pad 40, gap 10, width-2 line, SimHei 40; tile 560)
const video: PublishedVideoParams = { layout: 'published', fps: 1, max_frames: 32, frame_long_side: 1120, header_height: 40, gap: 10, line_width: 2, label_font: { file: 'label-font.ttf', size: 40 } }
const S = 560
const image = { ...preprocess.image, tile_size: S }
// Bound on the label bands (models/README.md "label pixels"): differing pixels per label. Measured 0 with the
// shipped font; with the default hinting it was ~730 (1/3 of the ink, up to 255 levels).
const MAX_DIFF_PER_LABEL = 0

t.test('published video path: equal to the trainer except the label glyph pixels', { skip: skipUnless(!missing, `${missing} missing`) }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'video-published-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const gen = (name: string, src: string, secs: number) => {
    const out = join(dir, name)
    const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', src, '-t', String(secs), '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-threads', '1', out])
    if (r.status !== 0) throw new Error(`ffmpeg testsrc: ${r.stderr}`)
    return out
  }
  const clips = [
    gen('fps25.mp4', 'testsrc=size=320x240:rate=25', 3),
    gen('fps30.mp4', 'testsrc2=size=320x180:rate=30', 3.5),
    gen('fps2997.mp4', 'testsrc=size=256x144:rate=30000/1001', 4.2),
    gen('long.mp4', 'testsrc=size=160x90:rate=5', 40), // 200 frames, stride 5: 40 positions > 32
    gen('square.mp4', 'testsrc2=size=96x96:rate=10', 3),
    gen('portrait.mp4', 'testsrc=size=90x160:rate=12.5', 3), // stride round(12.5) = 12
    join(fixtures, 'video', 'real', 'llamafactory-mllm_demo_4.mp4'),
    join(fixtures, 'video', 'real', 'fuzzcorpus-h264-aac-publicdomain-sample.mp4'),
    join(fixtures, 'video', 'real', 'small-webm.webm'), // avg_frame_rate 0/0: the published round(NaN) raises
  ]
  const pyVideo = { layout: 'published', fps: 1, max_frames: 32, frame_long_side: 1120, header_height: 40, gap: 10, line_width: 2, label_font_size: 40 }
  const py = spawnSync(PY, [join(import.meta.dirname, 'fixtures', 'video-published-reference.py'), JSON.stringify({ clips, video: pyVideo, tile: S })], { encoding: 'utf8', maxBuffer: 1 << 30 })
  t.equal(py.status, 0, `reference script ran: ${py.stderr.slice(-500)}`)
  const ref = JSON.parse(py.stdout).clips as Array<Record<string, any>>
  const cfg = defaultMediaConfig({ tempDir: dir })
  const bins = { ffmpeg: 'ffmpeg', ffprobe: 'ffprobe' }
  const limits = { timeoutMs: 60_000, maxStreams: 8, maxDurationS: 600, maxWidth: 4096, maxHeight: 4096, probeSizeBytes: 5_000_000 }
  let worstLabel = 0
  let worstLevel = 0
  for (const [k, file] of clips.entries()) {
    const want = ref[k]
    const demuxer = file.endsWith('.webm') ? 'matroska' : 'mov'
    const probe = await probeVideo(bins, file, demuxer, dir, limits, undefined, true)
    t.equal(probe.packets, want.packets, `${file}: frame count (packets)`)
    const positions = samplePositions(probe.avgFps!, probe.packets!, video.fps, video.max_frames)
    if (want.error) {
      t.equal(positions, null, `${file}: no stride where the published code raises (${want.error})`)
      continue
    }
    t.equal(probe.avgFps, want.avg_fps, `${file}: avg fps`)
    t.same(positions, want.positions, `${file}: frame indices`)
    const raw: RgbImage[] = []
    await extractFramesAt(bins, file, demuxer, dir, { indices: positions!, timeoutMs: 60_000, maxWidth: 4096, maxHeight: 4096 }, (f) => raw.push(f))
    t.equal(raw.length, positions!.length, `${file}: one decoded frame per position`)
    const last = raw[raw.length - 1]
    const frames = raw.map((f) => resizePublishedFrame(f, video.frame_long_side))
    const labels = await Promise.all(frames.map((_, i) => publishedLabel(FONT, 40, `<IMAGE ${i}>`)))
    const canvas = layoutPublished(frames, last.width > last.height, labels, video)
    t.same([canvas.width, canvas.height], want.canvas, `${file}: canvas size`)
    // outside the label bands: identical
    const rowBytes = canvas.width * 3
    const masked = Buffer.from(canvas.data)
    for (const [r0, r1] of want.bands as Array<[number, number]>) masked.fill(0, r0 * rowBytes, r1 * rowBytes)
    t.equal(createHash('sha256').update(masked).digest('hex'), want.masked_sha256, `${file}: canvas equal outside the label bands`)
    // inside: the glyph rasterisation differs, bounded per label
    const theirs = Buffer.from(want.band_pixels, 'base64')
    const ours = Buffer.concat((want.bands as Array<[number, number]>).map(([r0, r1]) => Buffer.from(canvas.data.subarray(r0 * rowBytes, r1 * rowBytes))))
    t.equal(ours.length, theirs.length)
    let differ = 0
    for (let i = 0; i < ours.length; i += 3) {
      const d = Math.max(Math.abs(ours[i] - theirs[i]), Math.abs(ours[i + 1] - theirs[i + 1]), Math.abs(ours[i + 2] - theirs[i + 2]))
      if (d > 0) differ++
      worstLevel = Math.max(worstLevel, d)
    }
    const perLabel = differ / frames.length
    worstLabel = Math.max(worstLabel, perLabel)
    t.ok(perLabel <= MAX_DIFF_PER_LABEL, `${file}: ${differ} label pixels differ over ${frames.length} labels (≤ ${MAX_DIFF_PER_LABEL} per label, at most ${worstLevel} levels)`)
    // Video_transform on the trainer's canvas (our canvas with its bands): identical pixels
    const same = { ...canvas, data: Buffer.from(canvas.data) }
    ;(want.bands as Array<[number, number]>).reduce((off, [r0, r1]) => {
      theirs.copy(same.data, r0 * rowBytes, off, off + (r1 - r0) * rowBytes)
      return off + (r1 - r0) * rowBytes
    }, 0)
    const img = publishedVideoImage({ width: same.width, height: same.height, data: new Uint8Array(same.data) }, S, [255, 255, 255])
    t.same([img.width, img.height, createHash('sha256').update(img.data).digest('hex')], want.image, `${file}: Video_transform identical on the same canvas`)
    // the whole service path (probe, select, resize, labels, layout, transform, normalise) on this file
    if (k === 0 || k === 3) {
      const tensor = await preprocessVideo(file, demuxer === 'mov' ? 'mp4' : 'webm', dir, video, image, cfg, undefined, undefined, join(root, 'trainer', 'reward_trainer', 'assets'))
      const pyImg = { width: want.image[0], height: want.image[1], data: new Uint8Array(Buffer.from(want.image_b64, 'base64')) }
      const pyT = normalizeToTensor(pyImg, image.mean, image.std)
      let maxd = 0
      for (let i = 0; i < pyT.length; i++) maxd = Math.max(maxd, Math.abs(pyT[i] - tensor.data[i]))
      t.equal(maxd, 0, `${file}: service tensor equals the trainer's (max |diff| ${maxd})`)
      t.same([tensor.width, tensor.height], [want.image[0], want.image[1]])
    }
  }
  t.comment(`label bands: at most ${worstLabel.toFixed(1)} differing pixels per label, at most ${worstLevel} levels`)
})

t.test('select by frame number returns exactly the frames of a full decode at those numbers', { skip: skipUnless(hasFfmpeg, 'ffmpeg missing') }, async (t) => {
  const file = join(fixtures, 'video', 'real', 'fuzzcorpus-h264-aac-publicdomain-sample.mp4') // H.264 with B-frames
  const dir = mkdtempSync(join(tmpdir(), 'video-select-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const bins = { ffmpeg: 'ffmpeg', ffprobe: 'ffprobe' }
  const picked: RgbImage[] = []
  const indices = [0, 1, 25, 26, 99, 100]
  await extractFramesAt(bins, file, 'mov', dir, { indices, timeoutMs: 60_000, maxWidth: 4096, maxHeight: 4096 }, (f) => picked.push(f))
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-map', '0:v:0', '-fps_mode', 'passthrough', '-frames:v', '101', '-f', 'image2pipe', '-c:v', 'ppm', '-'], { maxBuffer: 1 << 30 })
  const header = Buffer.from('P6\n640 360\n255\n').length
  const size = header + 640 * 360 * 3
  t.equal(r.stdout.length, 101 * size)
  indices.forEach((k, i) => t.ok(Buffer.from(picked[i].data).equals(r.stdout.subarray(k * size + header, (k + 1) * size)), `frame ${k}`))
})
