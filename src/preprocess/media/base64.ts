// Strict base64 for inline media, without running a regex over the whole payload (issue 13, item 3: the old
// `/^[A-Za-z0-9+/]*={0,2}$/` cost ~3 ms per image on the event loop, and every copy of an image in a request paid
// it again). What is accepted is unchanged: after removing every whitespace character (JavaScript's `\s` set),
// either the standard alphabet with at most two trailing `=`, or the URL-safe alphabet (`-`, `_`) without
// padding; never both alphabets in one payload, never `=` anywhere but at the end. Any length is accepted, as
// before (a trailing lone character carries no whole byte and is dropped by the decoder).
//
// Fast path (the common case: ASCII, no whitespace): let Node decode, then check. Node's decoder skips every
// character outside the two alphabets (and stops at an inner `=`), so a payload decodes to exactly
// floor(6·(length − padding) / 8) bytes only if every character was part of the alphabet (a length of 4k+1
// excepted: one skipped character would not change that count, so such payloads take the slow path; no encoder
// produces them). That holds for ASCII
// only (a character above U+00FF is truncated to its low byte, so U+0141 would pass as 'A'), hence the ASCII
// check first (Buffer.byteLength is native and vectorised). Alphabet mixing and an inner `=` are a few indexOf
// calls (memchr). Anything else (whitespace, non-ASCII, a length that does not add up) goes to the slow path, a
// single table-driven pass over the characters that decides exactly; the fast path only ever accepts what the
// slow path would. test/preprocess/base64.test.ts holds both to the old regexes on generated strings.

const ALNUM = 1
const STD = 2 // + /
const URL = 3 // - _
const PAD = 4 // =
const SPACE = 5 // what JavaScript's \s matches

const CLASS = new Uint8Array(65536)
for (let c = 0x30; c <= 0x39; c++) CLASS[c] = ALNUM
for (let c = 0x41; c <= 0x5a; c++) CLASS[c] = ALNUM
for (let c = 0x61; c <= 0x7a; c++) CLASS[c] = ALNUM
CLASS[0x2b] = STD
CLASS[0x2f] = STD
CLASS[0x2d] = URL
CLASS[0x5f] = URL
CLASS[0x3d] = PAD
for (const c of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff]) CLASS[c] = SPACE
for (let c = 0x2000; c <= 0x200a; c++) CLASS[c] = SPACE

function trailingPad(s: string): number {
  let p = 0
  while (p < 3 && p < s.length && s.charCodeAt(s.length - 1 - p) === 0x3d) p++
  return p
}

/** Bytes a valid payload of `chars` alphabet characters (padding excluded) decodes to. */
function decodedLength(chars: number): number {
  return Math.floor((chars * 6) / 8)
}

function nonSpaceChars(s: string): number {
  let spaces = 0
  for (let i = 0; i < s.length; i++) if (CLASS[s.charCodeAt(i)] === SPACE) spaces++
  return s.length - spaces
}

function fastDecode(s: string): Buffer | null {
  const n = s.length
  if (Buffer.byteLength(s, 'utf8') !== n) return null // not ASCII
  const pad = trailingPad(s)
  // 4k+1 characters decode to as many bytes as 4k: one skipped character would not show in the length
  if (pad > 2 || (n - pad) % 4 === 1) return null
  const eq = s.indexOf('=')
  if (eq >= 0 && eq < n - pad) return null
  const url = s.indexOf('-') >= 0 || s.indexOf('_') >= 0
  if (url && (pad > 0 || s.indexOf('+') >= 0 || s.indexOf('/') >= 0)) return null
  const buf = Buffer.from(s, 'base64')
  return buf.length === decodedLength(n - pad) ? buf : null
}

/** Whitespace removed, or null when the payload is not valid base64 (one pass, no regex). */
export function stripAndCheckBase64(s: string): string | null {
  const n = s.length
  let std = false
  let url = false
  let pad = 0 // `=` seen so far; after the first, only `=` and whitespace may follow
  let spaces = 0
  for (let i = 0; i < n; i++) {
    const k = CLASS[s.charCodeAt(i)]
    if (k === ALNUM) {
      if (pad) return null
    } else if (k === SPACE) {
      spaces++
    } else if (k === PAD) {
      if (++pad > 2) return null
    } else if (k === STD) {
      if (pad) return null
      std = true
    } else if (k === URL) {
      if (pad) return null
      url = true
    } else {
      return null
    }
  }
  if (url && (std || pad > 0)) return null
  if (spaces === 0) return s
  const parts: string[] = []
  let start = 0
  for (let i = 0; i < n; i++) {
    if (CLASS[s.charCodeAt(i)] !== SPACE) continue
    if (i > start) parts.push(s.slice(start, i))
    start = i + 1
  }
  if (start < n) parts.push(s.slice(start))
  return parts.join('')
}

/**
 * Decodes strict base64 (either alphabet, whitespace ignored): the bytes, 'invalid', or 'too_large' when
 * `tooLarge(chars)` holds for the payload's length without whitespace. The size is checked first, before the
 * characters and before anything is allocated (an oversized payload is refused as such even if it is not base64).
 */
export function decodeBase64Strict(s: string, tooLarge: (chars: number) => boolean = () => false): Buffer | 'invalid' | 'too_large' {
  // the raw length is an upper bound (whitespace only makes the payload shorter); count only when it matters
  if (tooLarge(s.length) && tooLarge(nonSpaceChars(s))) return 'too_large'
  const fast = fastDecode(s)
  if (fast) return fast
  const stripped = stripAndCheckBase64(s)
  if (stripped === null) return 'invalid'
  return Buffer.from(stripped, 'base64')
}
