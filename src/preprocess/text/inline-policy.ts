// Which requests are tokenized on the event loop and which on the tokenizer's worker thread (TOKENIZE_INLINE_CHARS):
// a pure policy of the texts' size, shared by the tokenizer (tokenize.ts) and the config's default (config.ts),
// kept free of the tokenizer library so that parsing the config does not load it.

/** TOKENIZE_INLINE_CHARS' default (config.ts). */
export const INLINE_CHARS = 2048
/** What a character outside ASCII counts for against the inline budget: the real tokenizer spends ≈ 3-4x as long
 *  per CJK character as per English one (2 048 English characters ≈ 1.6 ms, 512 CJK ≈ 1.5 ms, the worst case,
 *  2 048 without a space, ≈ 4 ms, on the loaded 2-core host). */
export const NON_ASCII_WEIGHT = 4

/** Whether texts are cheap enough to tokenize on the caller's thread: at most `limit` characters in all, a
 *  character outside ASCII counting NON_ASCII_WEIGHT. */
export function fitsInline(texts: readonly string[], limit: number): boolean {
  let cost = 0
  // lengths first: a request far over the limit (up to MAX_REQUEST_CHARS) goes to the worker without this loop
  // reading its text
  for (const t of texts) {
    if ((cost += t.length) > limit) return false
  }
  for (const t of texts) {
    for (let i = 0; i < t.length; i++) {
      if (t.charCodeAt(i) > 0x7f && (cost += NON_ASCII_WEIGHT - 1) > limit) return false
    }
  }
  return true
}
