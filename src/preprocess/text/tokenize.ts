// Text -> token ids with the model's own tokenizer.json, with SentencePiece semantics (models/README.md §Text):
// no BOS/EOS added here (the template adds them as ids), user-defined pieces ([UNUSED_TOKEN_*]) are atomic,
// and control pieces (<s>, </s>, <unk>, pad) are NOT recognised inside text — a user typing "</s>" gets the
// ids of those characters, exactly as sentencepiece would, so nobody can forge the reward position.
import { readFile } from 'node:fs/promises'
import { Tokenizer } from '@huggingface/tokenizers'

export interface TextTokenizer {
  encode(text: string): number[]
}

export interface ControlIds {
  bos_id: number
  eos_id: number
  pad_id: number
  unk_id: number
}

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>
  [k: string]: unknown
}

export class HfTextTokenizer implements TextTokenizer {
  readonly #tok: Tokenizer
  constructor(json: TokenizerJson, control: ControlIds) {
    const controlIds = new Set([control.bos_id, control.eos_id, control.pad_id, control.unk_id])
    // Hugging Face tokenizers split text on every added token; SentencePiece never matches control pieces in
    // text. Dropping them from the added-token list (they stay in the model vocab) gives sentencepiece's ids.
    const added_tokens = (json.added_tokens ?? []).filter((t) => !controlIds.has(t.id))
    this.#tok = new Tokenizer({ ...json, added_tokens }, {})
  }

  static async fromFile(file: string, control: ControlIds): Promise<HfTextTokenizer> {
    return new HfTextTokenizer(JSON.parse(await readFile(file, 'utf8')) as TokenizerJson, control)
  }

  encode(text: string): number[] {
    if (text.length === 0) return []
    return this.#tok.encode(text, { add_special_tokens: false }).ids
  }

  tokenToId(token: string): number | undefined {
    return this.#tok.token_to_id(token)
  }
}
