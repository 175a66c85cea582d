// Inline media base64 (src/preprocess/media/base64.ts, input.ts decodeInlineData): the regex-free decoder accepts
// and refuses exactly what the former whole-string regexes did, with the same bytes, the same size check first,
// on hand-picked edge cases and on generated strings (mixed alphabets, inner and extra padding, JavaScript
// whitespace, non-ASCII characters whose low byte is an alphabet character).
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { decodeBase64Strict, stripAndCheckBase64 } from '../../src/preprocess/media/base64.ts'
import { decodeInlineData } from '../../src/preprocess/media/input.ts'

// The previous implementation, kept here as the oracle.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const BASE64URL = /^[A-Za-z0-9_-]*$/
function oracle(data: string, maxBytes: number): string {
  let payload = data
  if (payload.startsWith('data:')) {
    const comma = payload.indexOf(',')
    if (comma < 0 || !/;base64$/i.test(payload.slice(0, comma))) return 'invalid_request'
    payload = payload.slice(comma + 1)
  }
  payload = payload.replace(/\s+/g, '')
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) return 'payload_too_large'
  if (!(BASE64.test(payload) || BASE64URL.test(payload))) return 'invalid_request'
  const buf = Buffer.from(payload, BASE64URL.test(payload) && /[-_]/.test(payload) ? 'base64url' : 'base64')
  if (buf.length > maxBytes) return 'payload_too_large'
  return buf.toString('hex')
}
// a test name without raw control or line-separator characters (TAP output is line-based)
const show = (s: string) => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
function current(data: string, maxBytes: number): string {
  try {
    return Buffer.from(decodeInlineData(data, maxBytes)).toString('hex')
  } catch (err) {
    return (err as { code: string }).code
  }
}

t.test('edge cases: same verdict and bytes as the regexes', async (t) => {
  const cases = [
    '', 'QQ', 'QQ=', 'QQ==', 'QQ===', 'QUI=', 'QUJD', 'Q', 'Q=', '=', '==', '===', 'QQ=Q', 'Q=Q=', '=QQ',
    'ab-_', 'ab+/', 'ab-/', 'ab_+', 'ab-=', 'ab_==', '-_-_', 'QQ==\n', ' QQ==', 'Q Q = =', 'QU\r\nJD', 'QU\tJD\v\f',
    'QU\u00a0JD', 'QU\u2003JD', 'QU\u3000JD', 'QU\ufeffJD', 'QU\u2028JD', 'QU\u200bJD', // \u200b is not \s
    'QU$D', 'QU.D', 'QU\u0000D', 'QU\u0141D', 'QU\u0130D', '\u0141BCD', 'QUJ\u00c4', 'QUJD\u0141', 'QU\uff21D',
    'data:image/png;base64,aGk=', 'data:;base64,aGk=', 'data:image/png;BASE64,aGk=', 'data:image/png,aGk=',
    'data:image/png;base64', 'data:image/png;base64,', 'data:image/png;base64, aG k=\n', 'data:image/png;base64,aG-k',
    'data:image/png;base64,aG$k', 'data:text/plain;charset=utf-8;base64,aGk=',
  ]
  for (const c of cases) t.equal(current(c, 1 << 20), oracle(c, 1 << 20), show(c))
})

t.test('size limit: checked on the length without whitespace, before validity', async (t) => {
  const b64 = randomBytes(300).toString('base64') // 400 chars
  for (const max of [290, 298, 299, 300, 301]) {
    t.equal(current(b64, max), oracle(b64, max), `max ${max}`)
    t.equal(current(`${b64}!`, max), oracle(`${b64}!`, max), `max ${max}, invalid`)
    const spaced = b64.replace(/(.{10})/g, '$1 \n')
    t.equal(current(spaced, max), oracle(spaced, max), `max ${max}, whitespace beyond the limit`)
  }
  t.equal(current(b64, 290), 'payload_too_large')
  t.equal(current(b64.replace(/(.{10})/g, '$1 '), 300), oracle(b64, 300), 'whitespace does not count towards the limit')
})

t.test('generated strings: same verdict and bytes as the regexes', async (t) => {
  const alphabet = ['A', 'z', '0', '9', '+', '/', '-', '_', '=', ' ', '\n', '\u00a0', '\u3000', '$', '\u0141', '\u0130', '\u00c4', '\u0000', '\u200b']
  let seed = 12345
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
  }
  let accepted = 0
  let mismatches = 0
  for (let i = 0; i < 20000; i++) {
    const len = rand(14)
    let s = ''
    // mostly alphabet characters, so that valid strings are common enough to compare bytes
    for (let j = 0; j < len; j++) s += rand(4) ? 'QUJDa2x0+/-_'[rand(12)]! : alphabet[rand(alphabet.length)]!
    if (rand(3) === 0) s += '='.repeat(rand(4))
    const want = oracle(s, 1 << 20)
    if (current(s, 1 << 20) !== want) mismatches++
    if (want !== 'invalid_request') accepted++
  }
  t.equal(mismatches, 0, 'no string where the verdict or the bytes differ')
  t.ok(accepted > 2000, `${accepted} of 20000 generated strings were valid base64 (both paths exercised)`)
})

t.test('real-sized payloads: a bad character anywhere is refused, either alphabet decodes the same bytes', async (t) => {
  const bytes = randomBytes(100_000)
  const std = bytes.toString('base64')
  const url = bytes.toString('base64url')
  t.equal(current(std, 1 << 20), bytes.toString('hex'))
  t.equal(current(url, 1 << 20), bytes.toString('hex'))
  t.equal(current(std.replace(/(.{76})/g, '$1\r\n'), 1 << 20), bytes.toString('hex'), 'MIME line breaks')
  for (const bad of ['$', '\u0141', '\u0130', '=', '-', '\u00e9']) {
    for (const at of [0, 1, 50_000, std.length - 3]) {
      const s = std.slice(0, at) + bad + std.slice(at + 1)
      t.equal(current(s, 1 << 20), oracle(s, 1 << 20), `${show(bad)} at ${at}`)
    }
  }
  t.equal(current(`${url}+`, 1 << 20), 'invalid_request', 'URL alphabet with a standard character')
})

t.test('the fast path accepts only what the exact scan accepts', async (t) => {
  for (const s of ['QUJD!', 'QUJDQ', 'QUJD', 'QUJD\u0141', 'QU\u0130D', 'QQ==', 'Q=Q=', 'ab-_', 'ab-/', 'a b']) {
    const fast = decodeBase64Strict(s)
    const exact = stripAndCheckBase64(s)
    t.equal(fast === 'invalid', exact === null, show(s))
  }
})
