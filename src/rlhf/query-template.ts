// Turns an OpenRLHF `query` (the policy's prompt+response decoded with skip_special_tokens=False, so it still
// carries the *policy's* chat markers, BOS/EOS and left padding) back into chat messages. The service then
// renders those messages with the *reward model's* template, as verl does with raw_prompt + response: scoring
// the policy's markers as plain text would put tokens in front of the RM it never saw in training.
//
// Everything here is linear in the query length (indexOf scans, no backtracking regexes): OpenRLHF's reference
// server once hung on O(n^2) EOS stripping (OpenRLHF PR #521) and queries can be tens of thousands of chars.
import type { Message, Role } from '../conversation/types.ts'

/** A policy chat template described by its literal marker strings. A turn opens either with `turnStart` followed
 *  by a role name and `roleEnd` (ChatML, Llama-3, Gemma), or with one of `roleMarkers`, whose role is fixed
 *  (Phi-3's `<|user|>`, Mistral's `[INST]`). */
export interface QueryTemplate {
  readonly name: string
  /** Opens a turn; the role name follows it. */
  readonly turnStart?: string
  /** Ends the role name (the content follows). */
  readonly roleEnd?: string
  /** Markers that open a turn of a fixed role (the content follows directly). */
  readonly roleMarkers?: ReadonlyArray<readonly [string, Role]>
  /** End a turn's content. A turn also ends at the next opening marker or at the end of the query. */
  readonly turnEnds: readonly string[]
  /** BOS / EOS / pad strings removed wherever they touch a turn's edges (left padding, trailing EOS runs). */
  readonly strip: readonly string[]
  /** System prompts the policy's template injects on its own (the dataset never had them): dropped. */
  readonly defaultSystemPrompts: readonly string[]
  /** Preambles a template prepends to every system message (Llama-3.1's knowledge-date lines): removed. */
  readonly systemPreamblePattern?: RegExp
}

const CHATML_STRIP = ['<|endoftext|>', '<|im_end|>', '<s>', '</s>']
const QWEN_DEFAULT_SYSTEM = ['You are a helpful assistant.', 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.']

// Real marker strings of each family, as they appear in the model's tokenizer_config.json chat_template.
export const QUERY_TEMPLATES: Readonly<Record<string, QueryTemplate>> = {
  chatml: {
    name: 'chatml',
    turnStart: '<|im_start|>',
    roleEnd: '\n',
    turnEnds: ['<|im_end|>'],
    strip: CHATML_STRIP,
    defaultSystemPrompts: [],
  },
  // Qwen2/2.5 = ChatML whose template adds a system turn when the conversation has none; pad is <|endoftext|>.
  qwen2: {
    name: 'qwen2',
    turnStart: '<|im_start|>',
    roleEnd: '\n',
    turnEnds: ['<|im_end|>'],
    strip: CHATML_STRIP,
    defaultSystemPrompts: QWEN_DEFAULT_SYSTEM,
  },
  // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n…<|eot_id|>; 3.1+ prepends date lines to system.
  llama3: {
    name: 'llama3',
    turnStart: '<|start_header_id|>',
    roleEnd: '<|end_header_id|>',
    turnEnds: ['<|eot_id|>'],
    strip: ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|finetune_right_pad_id|>', '<|eom_id|>'],
    defaultSystemPrompts: [],
    systemPreamblePattern: /^(?:Environment: ipython\n)?Cutting Knowledge Date: [^\n]*\nToday Date: [^\n]*(?:\n|$)/,
  },
  // InternLM2-chat: <s><|im_start|>user\n…<|im_end|>\n; EOS </s>.
  internlm2: {
    name: 'internlm2',
    turnStart: '<|im_start|>',
    roleEnd: '\n',
    turnEnds: ['<|im_end|>'],
    strip: ['<s>', '</s>', '<|im_end|>'],
    defaultSystemPrompts: [],
  },
  // InternLM2's original vocabulary (IXC-2.5, our RM): [UNUSED_TOKEN_146]user\n…[UNUSED_TOKEN_145]\n.
  ixc: {
    name: 'ixc',
    turnStart: '[UNUSED_TOKEN_146]',
    roleEnd: '\n',
    turnEnds: ['[UNUSED_TOKEN_145]'],
    strip: ['<s>', '</s>', '[UNUSED_TOKEN_145]', '[UNUSED_TOKEN_130]'],
    defaultSystemPrompts: [],
  },
  // Gemma 1/2/3: <bos><start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n…; no system role (the template
  // folds a system message into the first user turn), "model" is the assistant; EOS <eos>, pad <pad>.
  gemma: {
    name: 'gemma',
    turnStart: '<start_of_turn>',
    roleEnd: '\n',
    turnEnds: ['<end_of_turn>'],
    strip: ['<bos>', '<eos>', '<pad>', '<end_of_turn>'],
    defaultSystemPrompts: [],
  },
  // Phi-3 / Phi-3.5 / Phi-4-mini: <|system|>\n…<|end|>\n<|user|>\n…<|end|>\n<|assistant|>\n…<|end|>; EOS <|endoftext|>.
  phi3: {
    name: 'phi3',
    roleMarkers: [
      ['<|system|>', 'system'],
      ['<|user|>', 'user'],
      ['<|assistant|>', 'assistant'],
    ],
    turnEnds: ['<|end|>'],
    strip: ['<s>', '</s>', '<|endoftext|>', '<|end|>'],
    defaultSystemPrompts: [],
  },
  // Mistral / Mixtral (v1-v3, tekken): <s>[INST] user [/INST] answer</s>[INST] … The v1-v3 templates fold the
  // system prompt into a user turn (it stays there); newer ones have [SYSTEM_PROMPT]…[/SYSTEM_PROMPT], and tool
  // results come back in [TOOL_RESULTS]…[/TOOL_RESULTS] (a user turn to the RM, as everywhere here) after the
  // assistant's [TOOL_CALLS] text, which stays in its turn.
  mistral: {
    name: 'mistral',
    roleMarkers: [
      ['[INST]', 'user'],
      ['[/INST]', 'assistant'],
      ['[SYSTEM_PROMPT]', 'system'],
      ['[TOOL_RESULTS]', 'user'],
      // The answer after a tool result follows [/TOOL_RESULTS] with no [/INST] of its own.
      ['[/TOOL_RESULTS]', 'assistant'],
    ],
    turnEnds: ['</s>', '[/SYSTEM_PROMPT]'],
    strip: ['<s>', '</s>', '<pad>'],
    defaultSystemPrompts: [],
  },
}

/** `auto` detects the family from its markers and answers 422 when it finds none; `auto_or_plain` falls back
 *  to `plain` (split at prompts[i]) instead, for policies trained without a chat template. */
export const QUERY_TEMPLATE_NAMES = ['auto', 'auto_or_plain', 'plain', ...Object.keys(QUERY_TEMPLATES)] as const

/** Every name a /get_reward answer can report for a sample, in a fixed order (extra_logs keys use it). */
export const DETECTED_TEMPLATE_NAMES = ['messages', 'plain', ...Object.keys(QUERY_TEMPLATES)] as const

/** Left-over markers of any known family, stripped from `plain` splits (the prompt carries no markers then). */
const ALL_EOS_LIKE = [
  ...new Set(Object.values(QUERY_TEMPLATES).flatMap((t) => [...t.strip, ...t.turnEnds])),
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

/** The first occurrence of `needle` at or after `from`, remembered so that scanning forward stays linear. */
class ForwardFinder {
  #at = -2
  constructor(
    private readonly text: string,
    readonly needle: string,
  ) {}
  next(from: number): number {
    if (this.#at === -1 || (this.#at >= from && this.#at !== -2)) return this.#at
    this.#at = this.text.indexOf(this.needle, from)
    return this.#at
  }
}

/** Index of the first turn-opening marker of `template` in `query` (-1: none). */
function firstOpener(query: string, template: QueryTemplate): number {
  const at = [template.turnStart, ...(template.roleMarkers ?? []).map(([m]) => m)]
    .filter((m): m is string => m !== undefined)
    .map((m) => query.indexOf(m))
    .filter((i) => i >= 0)
  return at.length ? Math.min(...at) : -1
}

/**
 * Picks the family whose turn markers occur in the query; `null` when none does. ChatML is told apart by what
 * its users' templates add: Qwen's injected default system prompt (qwen2), InternLM2's `<s>` BOS (internlm2).
 */
export function detectQueryTemplate(query: string): QueryTemplate | null {
  const T = QUERY_TEMPLATES
  if (query.includes('<|start_header_id|>')) return T.llama3!
  if (query.includes('[UNUSED_TOKEN_146]')) return T.ixc!
  if (query.includes('<start_of_turn>')) return T.gemma!
  if (query.includes('<|user|>') || query.includes('<|assistant|>')) return T.phi3!
  const im = query.indexOf('<|im_start|>')
  if (im >= 0) {
    if (stripEdgeTokens(query.slice(0, im), ['<|endoftext|>']) === '<s>') return T.internlm2!
    const first = parseTemplatedQuery(query, T.qwen2!, { keepDefaultSystem: true })
    const head = first[0]
    if (head?.role === 'system' && typeof head.content === 'string' && QWEN_DEFAULT_SYSTEM.includes(head.content)) return T.qwen2!
    return T.chatml!
  }
  if (query.includes('[INST]') || query.includes('[/INST]')) return T.mistral!
  return null
}

interface Opening {
  at: number
  /** Where the marker (and the role name, for named-role templates) ends: the content starts here. */
  contentStart: number
  role: Role | null
}

/** The next turn opening at or after `from` (named-role marker or fixed-role marker, whichever comes first). */
function nextOpening(query: string, template: QueryTemplate, finders: ForwardFinder[], from: number): Opening | null {
  let best: Opening | null = null
  for (const f of finders) {
    const at = f.next(from)
    if (at < 0 || (best && at >= best.at)) continue
    const fixed = template.roleMarkers?.find(([m]) => m === f.needle)
    best = { at, contentStart: at + f.needle.length, role: fixed ? fixed[1] : null }
  }
  return best
}

/**
 * Splits a templated query into turns. The last turn is the response: it has no turn end when the policy hit
 * its length limit, so a turn may also end at the end of the query. Text before the first marker is what
 * left truncation left of an earlier turn; its role is unknown and it is kept as user context.
 */
export function parseTemplatedQuery(query: string, template: QueryTemplate, opts: { keepDefaultSystem?: boolean } = {}): Message[] {
  const messages: Message[] = []
  const openers = [template.turnStart, ...(template.roleMarkers ?? []).map(([m]) => m)].filter((m): m is string => !!m)
  // Longer markers first, so that one marker containing another ("[/INST]" vs "[INST]" do not, but keep it
  // safe) wins at the same position.
  const finders = openers.sort((a, b) => b.length - a.length).map((m) => new ForwardFinder(query, m))
  const ends = template.turnEnds.map((m) => new ForwardFinder(query, m))
  const roleEnd = template.roleEnd === undefined ? undefined : new ForwardFinder(query, template.roleEnd)
  const first = firstOpener(query, template)
  if (first < 0) {
    throw new QueryParseError(`query has no ${template.name} turn marker ${JSON.stringify(openers.join(' / '))}`)
  }
  const orphan = stripEdgeTokens(query.slice(0, first), template.strip)
  if (orphan.length > 0) messages.push({ role: 'user', content: orphan })
  let open = nextOpening(query, template, finders, first)
  while (open) {
    const next = nextOpening(query, template, finders, open.contentStart)
    const stopAt = next ? next.at : query.length
    let role: Role
    let contentStart = open.contentStart
    if (open.role === null) {
      const re = roleEnd!.next(contentStart)
      const endMark = Math.min(...ends.map((e) => e.next(contentStart)).filter((i) => i >= 0), stopAt)
      if (re < 0 || re > endMark) {
        // A marker with no role line: an empty turn, or a generation prompt cut short by the length limit.
        const name = query.slice(contentStart, endMark)
        const r = normaliseRole(name)
        if (name.trim().length > 0 && r !== 'system') messages.push({ role: r, content: '' })
        open = next
        continue
      }
      role = normaliseRole(query.slice(contentStart, re))
      contentStart = re + template.roleEnd!.length
    } else role = open.role
    let contentEnd = stopAt
    for (const e of ends) {
      const at = e.next(contentStart)
      if (at >= 0 && at < contentEnd) contentEnd = at
    }
    let content = stripEdgeTokens(query.slice(contentStart, contentEnd), template.strip)
    if (role === 'system' && template.systemPreamblePattern) {
      content = content.replace(template.systemPreamblePattern, '').trim()
    }
    const isDefaultSystem =
      role === 'system' && (content === '' || (!opts.keepDefaultSystem && template.defaultSystemPrompts.includes(content)))
    if (!isDefaultSystem) messages.push({ role, content })
    open = next
  }
  return opts.keepDefaultSystem ? messages : ensureResponseLast(messages)
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

export function resolveQueryTemplate(name: string): QueryTemplate | 'plain' | 'auto' | 'auto_or_plain' {
  if (name === 'auto' || name === 'plain' || name === 'auto_or_plain') return name
  const t = QUERY_TEMPLATES[name]
  if (!t) throw new QueryParseError(`unknown query template "${name}" (known: ${QUERY_TEMPLATE_NAMES.join(', ')})`)
  return t
}

/**
 * Where the response starts in a templated query. The response is the policy's output and may itself contain
 * the template's markers (a policy can emit them), so it is never parsed into turns. With the prompt
 * (OpenRLHF sends prompts[i]) the response is what follows it; without it, what follows the first assistant
 * turn opening (the turns before it come from the dataset; send prompts when prompts have assistant turns).
 */
function responseStart(query: string, prompt: string | undefined, template: QueryTemplate): number {
  const p = prompt === undefined ? '' : prompt
  if (p.length > 0) {
    const at = query.indexOf(p)
    if (at >= 0) return at + p.length
    const overlap = suffixPrefixOverlap(p, query) // the prompt's head was cut by left truncation
    if (overlap > 0) return overlap
  }
  const openers = [template.turnStart, ...(template.roleMarkers ?? []).map(([m]) => m)].filter((m): m is string => !!m)
  const finders = openers.sort((a, b) => b.length - a.length).map((m) => new ForwardFinder(query, m))
  const roleEnd = template.roleEnd === undefined ? undefined : new ForwardFinder(query, template.roleEnd)
  for (let open = nextOpening(query, template, finders, 0); open; ) {
    const next = nextOpening(query, template, finders, open.contentStart)
    if (open.role !== null) {
      if (open.role === 'assistant') return open.contentStart
    } else {
      const re = roleEnd!.next(open.contentStart)
      if (re >= 0 && (!next || re < next.at) && normaliseRole(query.slice(open.contentStart, re)) === 'assistant') {
        return re + template.roleEnd!.length
      }
    }
    open = next
  }
  return query.length
}

/** A templated query as the prompt's turns plus one assistant message holding the whole response. */
export function parseTemplatedQuerySafe(query: string, prompt: string | undefined, template: QueryTemplate): Message[] {
  const at = responseStart(query, prompt, template)
  const messages = parseTemplatedQuery(query.slice(0, at), template)
  const response = stripEdgeTokens(query.slice(at), [...template.strip, ...template.turnEnds])
  const last = messages[messages.length - 1]!
  // the prompt ends with the generation header: parseTemplatedQuery gave it as an empty assistant turn
  if (last.role === 'assistant' && last.content === '') last.content = response
  else messages.push({ role: 'assistant', content: response })
  return messages
}

/** query (+ its prompt) -> messages and the template that parsed it, with the template named in config/request
 *  (`auto` detects it and refuses a query in no known format; `auto_or_plain` splits those at the prompt). The
 *  response is always one assistant message (see responseStart). */
export function parseQuery(query: string, prompt: string | undefined, templateName: string): { messages: Message[]; template: string } {
  const resolved = resolveQueryTemplate(templateName)
  let template: QueryTemplate | 'plain'
  if (resolved === 'auto' || resolved === 'auto_or_plain') {
    const found = detectQueryTemplate(query)
    if (found) template = found
    else if (resolved === 'auto_or_plain') template = 'plain'
    else {
      throw new QueryParseError(
        `template=auto found no chat-template marker it knows (${Object.keys(QUERY_TEMPLATES).join(', ')}); name the ` +
          'policy template, or use template=plain (or auto_or_plain) for a policy without one, which splits the query at prompts[i]',
      )
    }
  } else template = resolved
  if (template === 'plain') return { messages: splitPlainQuery(query, prompt), template: 'plain' }
  return { messages: parseTemplatedQuerySafe(query, prompt, template), template: template.name }
}
