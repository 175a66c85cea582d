import t from 'tap'
import { sniffMedia, sniffPart } from '../../src/preprocess/media/sniff.ts'
import { readFixture as read } from './helpers/fixtures.ts'

t.test('real files sniff as what they are, whatever their name', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['images/real/imagereward-1.webp', { kind: 'image', format: 'webp' }],
    ['images/real/pngsuite-basn6a16.png', { kind: 'image', format: 'png' }],
    ['images/real/sharp-concert-grayscale.jpg', { kind: 'image', format: 'jpeg' }],
    ['images/real/sharp-rotating-squares-animated.gif', { kind: 'image', format: 'gif' }],
    ['video/real/llamafactory-mllm_demo_4.mp4', { kind: 'video', format: 'mp4' }],
    ['video/real/small-webm.webm', { kind: 'video', format: 'webm' }],
    // AVI bytes under an .mp4 name
    ['video/hostile/patt-read_passwd_bypass.mp4', { kind: 'video', format: 'avi' }],
  ]
  for (const [p, want] of cases) t.same(sniffMedia(read(p)), want, p)
})

t.test('everything else is not an allowed format', async (t) => {
  for (const p of [
    'images/hostile/libvips-17000x17000.avif', // ISO-BMFF, but a still-image brand
    'images/hostile/payloads/imagetragick-read.jpg', // MVG text
    'images/hostile/payloads/imagetragick-rce1.jpg',
    'images/hostile/payloads/patt-convert_local_etc_passwd.svg',
    'images/hostile/pngsuite/xs1n0g01.png', 'images/hostile/pngsuite/xs2n0g01.png', 'images/hostile/pngsuite/xs4n0g01.png',
    'images/hostile/pngsuite/xs7n0g01.png', 'images/hostile/pngsuite/xcrn0g04.png', 'images/hostile/pngsuite/xlfn0g04.png',
    'video/hostile/fuzzcorpus-bogus.ogv', 'video/hostile/fuzzcorpus-flvmeta_poc2', 'video/hostile/fuzzcorpus-random_32x18.264',
  ]) {
    t.equal(sniffMedia(read(p)), null, p)
    t.throws(() => sniffPart(read(p), 'image', ['mp4', 'webm']), { code: 'unsupported_media_type' }, `${p} -> 415`)
  }
  t.equal(sniffMedia(new TextEncoder().encode('#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\nfile:///etc/passwd\n')), null, 'HLS playlist')
})

t.test('declared type and allowed containers are enforced', async (t) => {
  t.throws(() => sniffPart(read('images/real/imagereward-1.webp'), 'video', ['mp4']), { code: 'unsupported_media_type' })
  t.throws(() => sniffPart(read('video/real/small-webm.webm'), 'image', ['mp4', 'webm']), { code: 'unsupported_media_type' })
  t.throws(() => sniffPart(read('video/hostile/patt-read_passwd_bypass.mp4'), 'video', ['mp4', 'webm']), { code: 'unsupported_media_type' }, 'AVI off by default')
  t.same(sniffPart(read('video/hostile/patt-read_passwd_bypass.mp4'), 'video', ['mp4', 'webm', 'avi']), { kind: 'video', format: 'avi' })
  t.throws(() => sniffPart(new Uint8Array(0), 'image', ['mp4']), { code: 'media_invalid' }, 'empty')
})
