// A ModelVersion with a character-level tokenizer, for tests that must not depend on a trained model.
import { ConversationEncoder } from '../../src/conversation/encode.ts'
import type { ModelManifest } from '../../src/models/manifest.ts'
import type { ModelVersion } from '../../src/models/model-version.ts'
import type { TextTokenizer } from '../../src/preprocess/text/tokenize.ts'

export const SPECIALS: Record<string, number> = { '[UNUSED_TOKEN_146]': 7, '[UNUSED_TOKEN_145]': 6, '[UNUSED_TOKEN_130]': 5 }

/** Atomic special pieces, otherwise one id per character (100 + code point mod 3000). */
export const charTokenizer: TextTokenizer = {
  atomicPieces: Object.keys(SPECIALS),
  maxPieceChars: 1,
  encode(text: string): number[] {
    const ids: number[] = []
    for (const piece of text.split(/(\[UNUSED_TOKEN_\d+\])/)) {
      if (SPECIALS[piece] !== undefined) ids.push(SPECIALS[piece]!)
      else for (const ch of piece) ids.push(100 + (ch.codePointAt(0)! % 3000))
    }
    return ids
  },
}

export interface FakeModelOptions {
  name?: string
  version?: number
  maxSeqLen?: number
  trainStats?: { mean: number; std: number; n: number }
}

export function fakeModel(o: FakeModelOptions = {}): ModelVersion {
  const name = o.name ?? 'fake-rm'
  const version = o.version ?? 1
  const maxSeqLen = o.maxSeqLen ?? 512
  const manifest = {
    format_version: 1,
    name,
    version,
    architecture: 'ixc2.5-reward',
    files: { 'reward.onnx': { sha256: 'ab'.repeat(32), bytes: 1 }, 'vision.onnx': { sha256: 'cd'.repeat(32), bytes: 1 } },
    graphs: {
      reward: { file: 'reward.onnx', inputs: [{ name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] }], outputs: [{ name: 'score', dtype: 'float32', shape: ['batch'] }] },
      vision: { file: 'vision.onnx', inputs: [{ name: 'image', dtype: 'float32', shape: ['n', 3, 'h', 'w'] }], outputs: [{ name: 'image_embeds', dtype: 'float32', shape: ['n', 't', 4] }] },
    },
    tokenizer: {
      file: 'tokenizer.json',
      type: 'sentencepiece-bpe',
      bos_id: 1,
      eos_id: 2,
      pad_id: 2,
      unk_id: 0,
      special: { turn_start: '[UNUSED_TOKEN_146]', turn_end: '[UNUSED_TOKEN_145]', reward: '[UNUSED_TOKEN_130]' },
      special_ids: { turn_start: 7, turn_end: 6, reward: 5 },
    },
    template: {
      turn: '[UNUSED_TOKEN_146]{role}\n{content}[UNUSED_TOKEN_145]\n',
      roles: ['system', 'user', 'assistant'],
      strip_content: true,
      prefix_ids: [1],
      suffix_ids: [2, 5],
      media_placement: 'inline',
    },
    max_seq_len: maxSeqLen,
    truncation: { side: 'left' },
    config: { hidden_size: 4, vision: { patch: 14, tile_size: 112 } },
    score: { readout: 'last', train_stats: o.trainStats ?? { mean: 0.5, std: 2, n: 100 } },
  } as unknown as ModelManifest
  const encoder = new ConversationEncoder(charTokenizer, {
    template: manifest.template,
    padId: 2,
    maxSeqLen,
    maxChars: 100_000,
  })
  const g = { inputNames: [], outputNames: [], executionProvider: 'fake', fallbacks: [] }
  return { key: `${name}/${version}`, name, version, dir: '/nonexistent', manifest, encoder, graphs: { reward: g, vision: g } }
}
