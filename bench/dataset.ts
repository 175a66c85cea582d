// Bench conversations: real dialogue text (hh-rlhf harmless-base test split from the shared fixtures), parsed
// into messages ending with the assistant response, so lengths and tokenization cost are realistic.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import type { Message } from '../src/conversation/types.ts'

export function parseHhDialogue(text: string): Message[] {
  const out: Message[] = []
  for (const chunk of text.split(/\n\n(?=Human:|Assistant:)/)) {
    const m = /^(Human|Assistant):\s?([\s\S]*)$/.exec(chunk.trim())
    if (m) out.push({ role: m[1] === 'Human' ? 'user' : 'assistant', content: m[2]! })
  }
  return out
}

export function loadConversations(repoRoot: string, n: number): Message[][] {
  const file = path.join(repoRoot, '..', 'shared', 'fixtures', 'preference', 'hh-rlhf-harmless-base-test.jsonl.gz')
  const lines = gunzipSync(readFileSync(file)).toString('utf8').split('\n').filter(Boolean)
  const convs: Message[][] = []
  for (const line of lines) {
    const row = JSON.parse(line) as { chosen: string; rejected: string }
    for (const text of [row.chosen, row.rejected]) {
      const msgs = parseHhDialogue(text)
      if (msgs.length > 0 && msgs[msgs.length - 1]!.role === 'assistant') convs.push(msgs)
      if (convs.length >= n) return convs
    }
  }
  return convs
}
