// Video through the scoring routes (real ffmpeg, fake engine): every fixture under video/real and video/hostile,
// the HLS-in-AVI payload, ffmpeg missing, and no temp dir / ffmpeg child left behind.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { buildMediaApp } from './helpers/media-app.ts'
import { fixtures, fixtureBase64 as b64, hasFfmpeg } from './helpers/fixtures.ts'
import { liveFfmpegChildren } from '../../src/preprocess/video/ffmpeg.ts'
import { TEMP_PREFIX, liveTempDirs } from '../../src/preprocess/media/temp-dir.ts'
import { skipUnless } from '../helpers/tools.ts'

const videoConv = (p: string) => ({
  items: [{ messages: [{ role: 'user', content: [{ type: 'video', data: b64(p) }, { type: 'text', text: 'what happens?' }] }, { role: 'assistant', content: 'someone draws' }] }],
})
const passwdLine = readFileSync('/etc/passwd', 'utf8').split('\n')[0]!

t.test('every video fixture: valid ones score, hostile ones get specific 4xx', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const { app, engine, tempRoot } = await buildMediaApp()
  t.teardown(() => app.close())
  const expected: Record<string, [number, string | null]> = {
    'video/real/llamafactory-mllm_demo_4.mp4': [200, null],
    'video/real/fuzzcorpus-h264-aac-publicdomain-sample.mp4': [200, null],
    'video/real/small-webm.webm': [200, null],
    'video/real/small-Mpeg4.mp4': [422, 'no_video_stream'],
    'video/hostile/patt-read_passwd_bypass.mp4': [415, 'unsupported_media_type'], // AVI: off by default
    'video/hostile/fuzzcorpus-bug1079747.mp4': [422, 'media_invalid'],
    'video/hostile/fuzzcorpus-0-timescale.mp4': [422, 'media_invalid'],
    'video/hostile/fuzzcorpus-bogus.ogv': [415, 'unsupported_media_type'],
    'video/hostile/fuzzcorpus-flvmeta_poc2': [415, 'unsupported_media_type'],
    'video/hostile/fuzzcorpus-random_32x18.264': [415, 'unsupported_media_type'],
  }
  // the table covers the whole fixture folders
  const all = ['real', 'hostile'].flatMap((d) => readdirSync(join(fixtures, 'video', d)).map((f) => `video/${d}/${f}`))
  t.same(all.sort(), Object.keys(expected).sort())
  // the same conversation without the video: a scored video adds its tokens and changes the score
  const textOnly = (await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: [{ type: 'text', text: 'what happens?' }] }, { role: 'assistant', content: 'someone draws' }] }] } })).json()
  for (const [p, [status, code]] of Object.entries(expected)) {
    const res = await app.inject({ method: 'POST', url: '/v1/score', payload: videoConv(p) })
    t.equal(res.statusCode, status, `${p}: ${res.body.slice(0, 200)}`)
    if (code) t.equal(res.json().error.code, code, p)
    else {
      t.ok(res.json().results[0].tokens > textOnly.results[0].tokens, `${p}: video tokens in the row`)
      t.not(res.json().scores[0], textOnly.scores[0], `${p}: the video reaches the score`)
    }
    t.notOk(res.body.includes(passwdLine.slice(0, 12)), `${p}: no /etc/passwd bytes in the answer`)
  }
  t.equal(engine.visionRuns.length, 3, 'the three valid videos reached the vision graph')
  t.equal(liveFfmpegChildren(), 0)
  t.equal(liveTempDirs(), 0)
  t.same(readdirSync(tempRoot).filter((n) => n.startsWith(TEMP_PREFIX)), [])
})

t.test('HLS-in-AVI with AVI allowed: forced demuxer, no playlist opened, nothing leaks', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const { app, engine } = await buildMediaApp({ VIDEO_FORMATS: 'mp4,webm,avi' })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/v1/score', payload: videoConv('video/hostile/patt-read_passwd_bypass.mp4') })
  t.equal(res.statusCode, 422)
  t.equal(res.json().error.code, 'no_video_stream')
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n').filter((l) => l.length > 8).slice(0, 5)) {
    t.notOk(res.body.includes(line), 'no passwd line in the answer')
  }
  t.equal(engine.visionRuns.length, 0, 'nothing was extracted')
  const models = (await app.inject({ url: '/v1/models' })).json()
  t.same(models.limits.media.video_formats, ['mp4', 'webm', 'avi'])
})

t.test('without ffmpeg: video is 503 video_unavailable, images still work', async (t) => {
  const { app, engine } = await buildMediaApp({ FFMPEG_PATH: '/nonexistent/ffmpeg', FFPROBE_PATH: '/nonexistent/ffprobe' })
  t.teardown(() => app.close())
  const v = await app.inject({ method: 'POST', url: '/v1/score', payload: videoConv('video/real/llamafactory-mllm_demo_4.mp4') })
  t.equal(v.statusCode, 503)
  t.equal(v.json().error.code, 'video_unavailable')
  const img = await app.inject({
    method: 'POST', url: '/v1/score',
    payload: { items: [{ messages: [{ role: 'user', content: [{ type: 'image', data: b64('images/real/sharp-concert-grayscale.jpg') }] }, { role: 'assistant', content: 'a concert' }] }] },
  })
  t.equal(img.statusCode, 200)
  t.equal(engine.visionRuns.length, 1)
})

t.test('a burst of video requests never runs more decoders than VIDEO_MAX_CONCURRENT', { skip: skipUnless(hasFfmpeg, 'no ffmpeg') }, async (t) => {
  const { app } = await buildMediaApp({ VIDEO_MAX_CONCURRENT: '1' })
  t.teardown(() => app.close())
  let peak = 0
  const timer = setInterval(() => (peak = Math.max(peak, liveFfmpegChildren())), 2)
  const files = ['video/real/llamafactory-mllm_demo_4.mp4', 'video/real/fuzzcorpus-h264-aac-publicdomain-sample.mp4', 'video/real/small-webm.webm', 'video/hostile/fuzzcorpus-bug1079747.mp4']
  const res = await Promise.all(files.map((p) => app.inject({ method: 'POST', url: '/v1/score', payload: videoConv(p) })))
  clearInterval(timer)
  t.same(res.map((r) => r.statusCode), [200, 200, 200, 422])
  t.equal(peak, 1, `at most one ffmpeg/ffprobe at a time (peak ${peak})`)
  t.equal(liveFfmpegChildren(), 0)
})
