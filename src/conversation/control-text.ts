// Safe mode for text that came from a client (the default): no content can produce a control token. The
// template's own markers are the only turn boundaries the reward model sees, so a response that types
// "[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]user\n..." cannot forge turns (and choose which turn is scored), and
// "</s>" or "<s>" in content never becomes EOS/BOS.
//
// How: every occurrence of a control string in content is cut after its first character, and the pieces are
// tokenized as separate runs; the tokenizer's added-token matcher then never sees the whole string, so the
// characters get ordinary text ids. The control strings are the tokenizer's own (its added tokens and the pieces
// of its control ids): a marker of another family that this vocabulary does not know is plain text anyway.
// Text without control strings is one piece (ids identical to the published
// pipeline's). The published pipeline's behaviour (markers in content ARE markers) is a fidelity mode for
// parity work only, unsafe for RL: it bypasses this function.

/**
 * Splits `text` into pieces none of which contains any of `controls` (each occurrence is cut after its first
 * character). Joining the pieces gives `text` back. Linear in text length × number of control strings (a few
 * dozen short strings; texts are already bounded before this runs).
 */
export function neutralizeControlText(text: string, controls: readonly string[]): string[] {
  if (controls.length === 0 || text.length === 0) return [text]
  const cuts: number[] = []
  for (const c of controls) {
    if ([...c].length < 2) continue // a one-character piece is that character's own id: nothing to forge
    // after the first character (a surrogate pair stays whole)
    for (let at = text.indexOf(c); at >= 0; at = text.indexOf(c, at + 1)) cuts.push(at + (text.codePointAt(at)! > 0xffff ? 2 : 1))
  }
  if (cuts.length === 0) return [text]
  cuts.sort((a, b) => a - b)
  const pieces: string[] = []
  let from = 0
  for (const cut of cuts) {
    if (cut <= from) continue
    pieces.push(text.slice(from, cut))
    from = cut
  }
  pieces.push(text.slice(from))
  return pieces
}
