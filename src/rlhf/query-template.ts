// Turns an OpenRLHF `query` (the policy's prompt+response decoded with skip_special_tokens=False, so it still
// carries the *policy's* chat markers, BOS/EOS and left padding) back into chat messages. The service then
// renders those messages with the *reward model's* template, as verl does with raw_prompt + response: scoring
// the policy's markers as plain text would put tokens in front of the RM it never saw in training.
//
// Everything here is linear in the query length (indexOf scans, no backtracking regexes): OpenRLHF's reference
// server once hung on O(n^2) EOS stripping (OpenRLHF PR #521) and queries can be tens of thousands of chars.
import type { Message, Role } from '../conversation/types.ts'

/** A policy chat template described by its literal marker strings. */
export interface QueryTemplate {
  readonly name: string
  /** Opens a turn; the role name follows it. */
  readonly turnStart: string
  /** Ends the role name (the content follows). */
  readonly roleEnd: string
  /** Ends a turn's content. A turn also ends at the next turnStart or at the end of the query. */
  readonly turnEnd: string
  /** BOS / EOS / pad strings removed wherever they touch a turn's edges (left padding, trailing EOS runs). */
  readonly strip: readonly string[]
  /** System prompts the policy's template injects on its own (the dataset never had them): dropped. */
  readonly defaultSystemPrompts: readonly string[]
  /** Preambles a template prepends to every system message (Llama-3.1's knowledge-date lines): removed. */
  readonly systemPreamblePattern?: RegExp
}

const CHATML_STRIP = ['<|endoftext|>', '<|im_end|>', '<s>', '</s>']

// Real marker strings of each family, as they appear in the model's tokenizer_config.json chat_template.
export const QUERY_TEMPLATES: Readonly<Record<string, QueryTemplate>> = {
  chatml: {
    name: 'chatml',
    turnStart: '<|im_start|>',
    roleEnd: '\n',
    turnEnd: '<|im_end|>',
    strip: CHATML_STRIP,
    defaultSystemPrompts: [],
  },
  // Qwen2/2.5 = ChatML whose template adds a system turn when the conversation has none; pad is <|endoftext|>.
  qwen2: {
    name: 'qwen2',
    turnStart: '<|im_start|>',
    roleEnd: '\n',
    turnEnd: '<|im_end|>',
    strip: CHATML_STRIP,
    defaultSystemPrompts: [
      'You are a helpful assistant.',
      'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.',
    ],
  },
  // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>; 3.1+ prepends date lines to system.
  llama3: {
    name: 'llama3',
    turnStart: '<|start_header_id|>',
    roleEnd: '<|end_header_id|>',
    turnEnd: '<|eot_id|>',
    strip: ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|finetune_right_pad_id|>', '<|eom_id|>'],
    defaultSystemPrompts: [],
    systemPreamblePattern: /^(?:Environment: ipython\n)?Cutting Knowledge Date: [^\n]*\nToday Date: [^\n]*(?:\n|$)/,
  },
  // InternLM2-chat: <s><|im_start|>user\n…<|im_end|>\n; EOS </s>.
  internlm2: {
    name: 'internlm2',
    turnStart: '<|im_start|>',
    roleEnd: '\n',
    turnEnd: '<|im_end|>',
    strip: ['<s>', '</s>', '<|im_end|>'],
    defaultSystemPrompts: [],
  },
  // InternLM2's original vocabulary (IXC-2.5, our RM): [UNUSED_TOKEN_146]user\n…[UNUSED_TOKEN_145]\n.
  ixc: {
    name: 'ixc',
    turnStart: '[UNUSED_TOKEN_146]',
    roleEnd: '\n',
    turnEnd: '[UNUSED_TOKEN_145]',
    strip: ['<s>', '</s>', '[UNUSED_TOKEN_145]', '[UNUSED_TOKEN_130]'],
    defaultSystemPrompts: [],
  },
}

export const QUERY_TEMPLATE_NAMES = ['auto', 'plain', ...Object.keys(QUERY_TEMPLATES)] as const

/** Left-over markers of any known family, stripped from `plain` splits (the prompt carries no markers then). */
const ALL_EOS_LIKE = [
  ...new Set(Object.values(QUERY_TEMPLATES).flatMap((t) => [...t.strip, t.turnEnd])),
].sort((a, b) => b.length - a.length)

export class QueryParseError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'QueryParseError'
  }
}

/** Removes any run of the given tokens (and whitespace) at both ends, in linear time. */
export function stripEdgeTokens(text: string, tokens: readonly string[]): string {
  let start = 0
  let end = text.length
  for (let moved = true; moved && start < end; ) {
    moved = false
    while (start < end && isSpace(text.charCodeAt(start))) start++, (moved = true)
    for (const tok of tokens) {
      if (tok.length > 0 && text.startsWith(tok, start) && start + tok.length <= end) {
        start += tok.length
        moved = true
      }
    }
  }
  for (let moved = true; moved && end > start; ) {
    moved = false
    while (end > start && isSpace(text.charCodeAt(end - 1))) end--, (moved = true)
    for (const tok of tokens) {
      if (tok.length > 0 && end - tok.length >= start && text.startsWith(tok, end - tok.length)) {
        end -= tok.length
        moved = true
      }
    }
  }
  return text.slice(start, end)
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9
}

function normaliseRole(raw: string): Role {
  const r = raw.trim().toLowerCase()
  if (r === 'system') return 'system'
  if (r === 'assistant' || r === 'gpt' || r === 'bot' || r === 'model') return 'assistant'
  // user, human, and tool/ipython/environment/function results: the RM template only knows three roles, and a
  // tool result is input the assistant answers, which is what "user" means to the RM.
  return 'user'
}

/** Picks the template whose turn marker occurs in the query; `plain` when none does. */
export function detectQueryTemplate(query: string): QueryTemplate | 'plain' {
  if (query.includes(QUERY_TEMPLATES.llama3.turnStart)) return QUERY_TEMPLATES.llama3
  if (query.includes(QUERY_TEMPLATES.ixc.turnStart)) return QUERY_TEMPLATES.ixc
  if (query.includes('<|im_start|>')) return QUERY_TEMPLATES.chatml
  return 'plain'
}

/**
 * Splits a templated query into turns. The last turn is the response: it has no turnEnd when the policy hit
 * its length limit, so a turn may also end at the end of the query. Text before the first marker is what
 * left truncation left of an earlier turn; its role is unknown and it is kept as user context.
 */
export function parseTemplatedQuery(query: string, template: QueryTemplate): Message[] {
  const messages: Message[] = []
  const first = query.indexOf(template.turnStart)
  if (first < 0) throw new QueryParseError(`query has no ${template.name} turn marker ${JSON.stringify(template.turnStart)}`)
  const orphan = stripEdgeTokens(query.slice(0, first), template.strip)
  if (orphan.length > 0) messages.push({ role: 'user', content: orphan })
  let pos = first
  while (pos >= 0 && pos < query.length) {
    const roleStart = pos + template.turnStart.length
    const roleEnd = query.indexOf(template.roleEnd, roleStart)
    const nextStart = query.indexOf(template.turnStart, roleStart)
    const endMark = query.indexOf(template.turnEnd, roleStart)
    const stop = nextStart < 0 ? endMark : endMark < 0 ? nextStart : Math.min(nextStart, endMark)
    if (roleEnd < 0 || (stop >= 0 && stop < roleEnd)) {
      // A marker with no role line: an empty turn, or a generation prompt cut short by the length limit.
      const role = query.slice(roleStart, stop >= 0 ? stop : query.length)
      const r = normaliseRole(role)
      if (role.trim().length > 0 && r !== 'system') messages.push({ role: r, content: '' })
      pos = nextStart
      continue
    }
    const role = normaliseRole(query.slice(roleStart, roleEnd))
    const contentStart = roleEnd + template.roleEnd.length
    const turnEnd = query.indexOf(template.turnEnd, contentStart)
    const next = query.indexOf(template.turnStart, contentStart)
    let contentEnd = query.length
    if (turnEnd >= 0) contentEnd = turnEnd
    if (next >= 0 && next < contentEnd) contentEnd = next
    let content = stripEdgeTokens(query.slice(contentStart, contentEnd), template.strip)
    if (role === 'system' && template.systemPreamblePattern) {
      content = content.replace(template.systemPreamblePattern, '').trim()
    }
    const isDefaultSystem = role === 'system' && (content === '' || template.defaultSystemPrompts.includes(content))
    if (!isDefaultSystem) messages.push({ role, content })
    pos = next
  }
  return ensureResponseLast(messages)
}

/**
 * Longest suffix of `a` that is a prefix of `b` (KMP failure function over b + sentinel + a; linear).
 * OpenRLHF may left-truncate the prompt inside `query`, so the query then starts with the prompt's tail.
 */
export function suffixPrefixOverlap(a: string, b: string): number {
  const s = b + '\u0000' + a
  const fail = new Int32Array(s.length)
  for (let i = 1; i < s.length; i++) {
    let k = fail[i - 1]
    while (k > 0 && s.charCodeAt(i) !== s.charCodeAt(k)) k = fail[k - 1]
    if (s.charCodeAt(i) === s.charCodeAt(k)) k++
    fail[i] = k
  }
  return Math.min(fail[s.length - 1], b.length)
}

/** `plain`: the prompt is the user turn, the rest of the query is the response. */
export function splitPlainQuery(query: string, prompt: string | undefined): Message[] {
  const q = stripEdgeTokens(query, ALL_EOS_LIKE)
  const p = prompt === undefined ? '' : stripEdgeTokens(prompt, ALL_EOS_LIKE)
  if (p.length === 0) throw new QueryParseError('template "plain" needs the prompt (prompts[i]) to split the query')
  let responseStart: number
  if (q.startsWith(p)) responseStart = p.length
  else {
    const at = q.indexOf(p)
    if (at >= 0) responseStart = at + p.length
    else {
      const overlap = suffixPrefixOverlap(p, q)
      if (overlap === 0) throw new QueryParseError('query does not contain its prompt; cannot split prompt from response')
      responseStart = overlap
    }
  }
  return [
    { role: 'user', content: p },
    { role: 'assistant', content: stripEdgeTokens(q.slice(responseStart), ALL_EOS_LIKE) },
  ]
}

function ensureResponseLast(messages: Message[]): Message[] {
  const last = messages[messages.length - 1]
  // A query that ends right after the user turn (response empty and its header cut) still gets scored: the
  // RM sees an empty answer, which is what the policy produced.
  if (!last || last.role !== 'assistant') messages.push({ role: 'assistant', content: '' })
  if (!messages.some((m) => m.role === 'user')) {
    throw new QueryParseError('query has no prompt turn before the response')
  }
  return messages
}

export function resolveQueryTemplate(name: string): QueryTemplate | 'plain' | 'auto' {
  if (name === 'auto' || name === 'plain') return name
  const t = QUERY_TEMPLATES[name]
  if (!t) throw new QueryParseError(`unknown query template "${name}" (known: ${QUERY_TEMPLATE_NAMES.join(', ')})`)
  return t
}

/**
 * Where the response starts in a templated query. The response is the policy's output and may itself contain
 * the template's markers (a policy can emit them), so it is never parsed into turns. With the prompt
 * (OpenRLHF sends prompts[i]) the response is what follows it; without it, what follows the first assistant
 * turn header (the turns before it come from the dataset; send prompts when prompts have assistant turns).
 */
function responseStart(query: string, prompt: string | undefined, template: QueryTemplate): number {
  const p = prompt === undefined ? '' : prompt
  if (p.length > 0) {
    const at = query.indexOf(p)
    if (at >= 0) return at + p.length
    const overlap = suffixPrefixOverlap(p, query) // the prompt's head was cut by left truncation
    if (overlap > 0) return overlap
  }
  for (let pos = query.indexOf(template.turnStart); pos >= 0; pos = query.indexOf(template.turnStart, pos + 1)) {
    const roleStart = pos + template.turnStart.length
    const roleEnd = query.indexOf(template.roleEnd, roleStart)
    const next = query.indexOf(template.turnStart, roleStart)
    if (roleEnd < 0 || (next >= 0 && next < roleEnd)) continue
    if (normaliseRole(query.slice(roleStart, roleEnd)) === 'assistant') return roleEnd + template.roleEnd.length
  }
  return query.length
}

/** A templated query as the prompt's turns plus one assistant message holding the whole response. */
export function parseTemplatedQuerySafe(query: string, prompt: string | undefined, template: QueryTemplate): Message[] {
  const at = responseStart(query, prompt, template)
  const messages = parseTemplatedQuery(query.slice(0, at), template)
  const response = stripEdgeTokens(query.slice(at), [...template.strip, template.turnEnd])
  const last = messages[messages.length - 1]!
  // the prompt ends with the generation header: parseTemplatedQuery gave it as an empty assistant turn
  if (last.role === 'assistant' && last.content === '') last.content = response
  else messages.push({ role: 'assistant', content: response })
  return messages
}

/** query (+ its prompt) -> messages, with the template named in config/request (`auto` detects it). The
 *  response is always one assistant message (see responseStart). */
export function parseQuery(query: string, prompt: string | undefined, templateName: string): Message[] {
  const resolved = resolveQueryTemplate(templateName)
  const template = resolved === 'auto' ? detectQueryTemplate(query) : resolved
  if (template === 'plain') return splitPlainQuery(query, prompt)
  return parseTemplatedQuerySafe(query, prompt, template)
}
