// Readers for the preference datasets users clean with `clean`: our JSONL, Anthropic hh-rlhf transcripts and
// LLaMA-Factory DPO files. Each record becomes full conversations (prompt + response) in the service's message
// shape, with media read from disk and inlined as base64 parts. The conversations are the ones the trainer
// builds (trainer/reward_trainer/data.py), so a cleaning score is the score the sample trains with.
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import zlib from 'node:zlib'
import type { Content, Message, Part, Role } from '../conversation/types.ts'

export const DATASET_FORMATS = ['auto', 'ours', 'hh-rlhf', 'llamafactory'] as const
export type DatasetFormat = (typeof DATASET_FORMATS)[number]

export interface DatasetSample {
  id: string
  /** "file:line" of the record. */
  where?: string
  category?: string
  /** prompt + chosen response (or the only response of an unpaired sample). */
  chosen: Message[]
  rejected?: Message[]
}

/** A record that cannot become conversations is reported, not fatal: cleaning is about finding bad rows. */
export interface DatasetSkip {
  id: string
  skip: string
  /** "file:line" of the record. */
  where: string
}

export type DatasetRow = DatasetSample | DatasetSkip

export class DatasetError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'DatasetError'
  }
}

type Json = Record<string, unknown>

/** Streams the raw records of a .json (array), .jsonl or .jsonl.gz file with their 0-based index and where they
 *  are ("file:line", 1-based line of the record's first character), so that every complaint names its line. */
export async function* readRecords(file: string): AsyncGenerator<{ index: number; record: unknown; where: string }> {
  if (/\.json$/i.test(file)) {
    const text = await readText(file)
    let rows: unknown
    try {
      rows = JSON.parse(text)
    } catch (err) {
      throw new DatasetError(`${file}:${jsonErrorLine(err as Error, text)}: not valid JSON (${(err as Error).message})`)
    }
    if (!Array.isArray(rows)) throw new DatasetError(`${file}:1: a .json dataset must be an array of records`)
    const lines = arrayElementLines(text)
    for (let i = 0; i < rows.length; i++) yield { index: i, record: rows[i], where: `${file}:${lines[i] ?? 1}` }
    return
  }
  let input: NodeJS.ReadableStream = fs.createReadStream(file)
  if (/\.gz$/i.test(file)) input = input.pipe(zlib.createGunzip())
  const lines = readline.createInterface({ input, crlfDelay: Infinity })
  let index = 0
  let lineNo = 0
  try {
    for await (const line of lines) {
      lineNo++
      if (line.trim() === '') continue
      let record: unknown
      try {
        record = JSON.parse(line)
      } catch (err) {
        record = { __invalid_json: (err as Error).message }
      }
      yield { index: index++, record, where: `${file}:${lineNo}` }
    }
  } catch (err) {
    throw new DatasetError(`${file}:${lineNo + 1}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
}

async function readText(file: string): Promise<string> {
  try {
    return await fs.promises.readFile(file, 'utf8')
  } catch (err) {
    throw new DatasetError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
}

/** The line of a JSON.parse error: from the message when it has one (Node 22: "line L column C"; older V8:
 *  "at position N"), else the first line of the first top-level array element that does not parse alone. */
export function jsonErrorLine(err: Error, text: string): number {
  const line = /\bline (\d+)/.exec(err.message)
  if (line) return Number(line[1])
  const pos = /position (\d+)/.exec(err.message)
  if (pos) return text.slice(0, Number(pos[1])).split('\n').length
  for (const e of arrayElements(text)) {
    try {
      JSON.parse(text.slice(e.start, e.end))
    } catch {
      return e.line
    }
  }
  return text.split('\n').length
}

/** 1-based line where each top-level element of a JSON array starts. */
export function arrayElementLines(text: string): number[] {
  return arrayElements(text).map((e) => e.line)
}

/** Top-level elements of a JSON array: [start, end) offsets and first line (a scan that skips strings and
 *  nesting; it does not validate). */
function arrayElements(text: string): Array<{ start: number; end: number; line: number }> {
  const out: Array<{ start: number; end: number; line: number }> = []
  let line = 1
  let depth = 0
  let inString = false
  let expectElement = false
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (ch === '\n') line++
    if (inString) {
      if (ch === '\\') i++
      else if (ch === '"') inString = false
      continue
    }
    if (/\s/.test(ch)) continue
    if (depth === 1 && expectElement && ch !== ']') {
      out.push({ start: i, end: text.length, line })
      expectElement = false
    }
    if (ch === '"') inString = true
    else if (ch === '[' || ch === '{') {
      depth++
      if (depth === 1) expectElement = true
    } else if (ch === ']' || ch === '}') {
      if (depth === 1 && out.length) out[out.length - 1]!.end = Math.min(out[out.length - 1]!.end, i)
      depth--
    } else if (ch === ',' && depth === 1) {
      if (out.length) out[out.length - 1]!.end = i
      expectElement = true
    }
  }
  return out
}

/** Number of records, for the progress bar (one cheap pass; gzip included). */
export async function countRecords(file: string): Promise<number> {
  let n = 0
  for await (const _ of readRecords(file)) n++
  return n
}

export function detectFormat(record: unknown, where = 'first record'): Exclude<DatasetFormat, 'auto'> {
  const r = record as Json
  if (r && typeof r === 'object') {
    if ('conversations' in r || 'chosen_messages' in r || 'instruction' in r) return 'llamafactory'
    if ('messages' in r) return 'ours'
    if (typeof r.chosen === 'string' && typeof r.rejected === 'string' && r.chosen.includes('\n\nHuman:')) return 'hh-rlhf'
  }
  throw new DatasetError(`${where}: cannot detect the dataset format from the first record; pass --format (${DATASET_FORMATS.slice(1).join(', ')})`)
}

export interface ReadDatasetOptions {
  format: DatasetFormat
  /** Category for records that have none (defaults to the format name, as the trainer's importers do). */
  category?: string
}

export async function* readDataset(file: string, opts: ReadDatasetOptions): AsyncGenerator<DatasetRow> {
  const baseDir = path.dirname(path.resolve(file))
  let format: Exclude<DatasetFormat, 'auto'> | undefined = opts.format === 'auto' ? undefined : opts.format
  for await (const { index, record, where } of readRecords(file)) {
    format ??= detectFormat(record, where)
    const category = opts.category ?? format
    const fallbackId = `${category}-${index}`
    try {
      if (record && typeof record === 'object' && '__invalid_json' in (record as Json)) {
        throw new DatasetError(`not valid JSON (${(record as Json).__invalid_json})`)
      }
      if (!record || typeof record !== 'object' || Array.isArray(record)) throw new DatasetError('not a JSON object')
      const r = record as Json
      let sample: DatasetSample
      if (format === 'ours') sample = await fromOurs(r, baseDir, fallbackId)
      else if (format === 'hh-rlhf') sample = fromHh(r, fallbackId, category)
      else sample = await fromLlamaFactory(r, baseDir, fallbackId, category)
      yield { ...sample, where }
    } catch (err) {
      const id = typeof (record as Json)?.id === 'string' ? String((record as Json).id) : fallbackId
      yield { id, skip: (err as Error).message, where }
    }
  }
}

// ------------------------------------------------------------------------------------------------ ours
async function fromOurs(r: Json, baseDir: string, fallbackId: string): Promise<DatasetSample> {
  const id = typeof r.id === 'string' || typeof r.id === 'number' ? String(r.id) : fallbackId
  if (!Array.isArray(r.messages)) throw new DatasetError('"messages" must be a list')
  const prompt: Message[] = []
  for (const m of r.messages as Json[]) prompt.push({ role: role(m.role), content: await ourContent(m.content, baseDir) })
  const media: Part[] = []
  for (const p of (r.images as string[] | undefined) ?? []) media.push(await mediaPart('image', path.resolve(baseDir, p)))
  for (const p of (r.videos as string[] | undefined) ?? []) media.push(await mediaPart('video', path.resolve(baseDir, p)))
  if (media.length > 0) {
    // The trainer's layout: all media at the start of the first user turn.
    const ui = prompt.findIndex((m) => m.role === 'user')
    if (ui < 0) throw new DatasetError('record has media but no user message to put them in')
    prompt[ui] = { role: 'user', content: [...media, ...asParts(prompt[ui].content)] }
  }
  const tail = async (x: unknown): Promise<Message[]> => {
    if (typeof x === 'string') return [{ role: 'assistant', content: x }]
    if (!Array.isArray(x)) throw new DatasetError('chosen/rejected must be a string or a list of messages')
    const out: Message[] = []
    for (const m of x as Json[]) out.push({ role: role(m.role), content: await ourContent(m.content, baseDir) })
    return out
  }
  if (r.chosen === undefined) {
    // An unpaired sample: the conversation is `messages` itself, ending with the response.
    return { id, category: optString(r.category), chosen: checkConversation(prompt) }
  }
  const chosen = checkConversation([...prompt, ...(await tail(r.chosen))])
  const rejected = r.rejected === undefined ? undefined : checkConversation([...prompt, ...(await tail(r.rejected))])
  return { id, category: optString(r.category), chosen, rejected }
}

/** A message content of our JSONL: a string, or parts whose media `path`s are read (relative to baseDir). */
export async function ourContent(c: unknown, baseDir: string): Promise<Content> {
  if (typeof c === 'string') return c
  if (!Array.isArray(c)) throw new DatasetError('message content must be a string or a list of parts')
  const parts: Part[] = []
  for (const p of c as Json[]) {
    if (p.type === 'text') parts.push({ type: 'text', text: String(p.text ?? '') })
    else if (p.type === 'image' || p.type === 'video') {
      if (typeof p.path === 'string') parts.push(await mediaPart(p.type, path.resolve(baseDir, p.path)))
      else if (typeof p.data === 'string') parts.push({ type: p.type, data: p.data })
      else throw new DatasetError(`${p.type} part needs "path" or "data"`)
    } else throw new DatasetError(`unknown part type ${JSON.stringify(p.type)}`)
  }
  return parts
}

// --------------------------------------------------------------------------------------------- hh-rlhf
/** '\n\nHuman: …\n\nAssistant: …' -> messages (the markers, in order; text before the first is dropped). */
export function splitHhTranscript(text: string): Message[] {
  const markers: Array<[string, Role]> = [
    ['\n\nHuman:', 'user'],
    ['\n\nAssistant:', 'assistant'],
  ]
  const out: Message[] = []
  let pos = 0
  let current: { role: Role; start: number } | undefined
  for (;;) {
    let next: { at: number; marker: string; role: Role } | undefined
    for (const [marker, r] of markers) {
      const at = text.indexOf(marker, pos)
      if (at >= 0 && (!next || at < next.at)) next = { at, marker, role: r }
    }
    if (!next) break
    if (current) out.push({ role: current.role, content: text.slice(current.start, next.at).trim() })
    current = { role: next.role, start: next.at + next.marker.length }
    pos = current.start
  }
  if (current) out.push({ role: current.role, content: text.slice(current.start).trim() })
  return out
}

function fromHh(r: Json, id: string, category: string): DatasetSample {
  if (typeof r.chosen !== 'string' || typeof r.rejected !== 'string') throw new DatasetError('hh-rlhf rows need string chosen/rejected')
  return {
    id,
    category,
    chosen: checkConversation(splitHhTranscript(r.chosen)),
    rejected: checkConversation(splitHhTranscript(r.rejected)),
  }
}

// ---------------------------------------------------------------------------------------- LLaMA-Factory
const LF_ROLES: Record<string, Role> = {
  human: 'user',
  user: 'user',
  observation: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  function_call: 'assistant',
  system: 'system',
}

async function fromLlamaFactory(r: Json, baseDir: string, id: string, category: string): Promise<DatasetSample> {
  // LLaMA-Factory's multimodal rows put <image>/<video> placeholders in the text and list files in order.
  const media = {
    image: ((r.images as string[] | undefined) ?? []).map((p) => path.resolve(baseDir, p)),
    video: ((r.videos as string[] | undefined) ?? []).map((p) => path.resolve(baseDir, p)),
  }
  const used = { image: 0, video: 0 }
  const content = async (text: unknown): Promise<Content> => {
    if (Array.isArray(text)) {
      // v1 typed parts: {type: "text", value} (media parts are not in the v1 demo; text only).
      return (text as Json[]).filter((p) => (p.type ?? 'text') === 'text').map((p) => String(p.value ?? p.text ?? '')).join('')
    }
    const s = String(text ?? '')
    if (!/<(image|video)>/.test(s)) return s
    const parts: Part[] = []
    let last = 0
    for (const m of s.matchAll(/<(image|video)>/g)) {
      if (m.index! > last) parts.push({ type: 'text', text: s.slice(last, m.index) })
      const kind = m[1] as 'image' | 'video'
      const file = media[kind][used[kind]++]
      if (!file) throw new DatasetError(`more <${kind}> placeholders than ${kind}s listed`)
      parts.push(await mediaPart(kind, file))
      last = m.index! + m[0].length
    }
    if (last < s.length) parts.push({ type: 'text', text: s.slice(last) })
    return parts
  }
  const lfRole = (x: unknown): Role => LF_ROLES[String(x)] ?? 'assistant'
  let prompt: Message[]
  let chosen: Message[]
  let rejected: Message[]
  if (Array.isArray(r.conversations)) {
    prompt = []
    if (typeof r.system === 'string' && r.system) prompt.push({ role: 'system', content: r.system })
    for (const m of r.conversations as Json[]) prompt.push({ role: lfRole(m.from), content: await content(m.value) })
    const pick = async (x: unknown): Promise<Message[]> => {
      const m = x as Json
      if (typeof x === 'string') return [{ role: 'assistant', content: x }]
      return [{ role: lfRole(m?.from ?? 'gpt'), content: await content(m?.value) }]
    }
    chosen = [...prompt, ...(await pick(r.chosen))]
    rejected = [...prompt, ...(await pick(r.rejected))]
  } else if (Array.isArray(r.chosen_messages) && Array.isArray(r.rejected_messages)) {
    chosen = []
    rejected = []
    for (const m of r.chosen_messages as Json[]) chosen.push({ role: lfRole(m.role), content: await content(m.content) })
    for (const m of r.rejected_messages as Json[]) rejected.push({ role: lfRole(m.role), content: await content(m.content) })
  } else if (typeof r.instruction === 'string') {
    // alpaca-style DPO: {instruction, input, chosen, rejected} (strings)
    const user = [r.instruction, r.input].filter((x) => typeof x === 'string' && x).join('\n')
    prompt = typeof r.system === 'string' && r.system ? [{ role: 'system', content: r.system }] : []
    prompt.push({ role: 'user', content: await content(user) })
    chosen = [...prompt, { role: 'assistant', content: String(r.chosen ?? '') }]
    rejected = [...prompt, { role: 'assistant', content: String(r.rejected ?? '') }]
  } else throw new DatasetError('not a LLaMA-Factory DPO row (conversations / chosen_messages / instruction)')
  return { id, category, chosen: checkConversation(chosen), rejected: checkConversation(rejected) }
}

// -------------------------------------------------------------------------------------------- helpers
function role(x: unknown): Role {
  if (x === 'system' || x === 'user' || x === 'assistant') return x
  throw new DatasetError(`unknown role ${JSON.stringify(x)}`)
}

function optString(x: unknown): string | undefined {
  return typeof x === 'string' ? x : undefined
}

function asParts(c: Content): Part[] {
  return typeof c === 'string' ? [{ type: 'text', text: c }] : c
}

function checkConversation(ms: Message[]): Message[] {
  if (ms.length === 0 || ms[ms.length - 1].role !== 'assistant') {
    throw new DatasetError('conversation does not end with an assistant response')
  }
  return ms
}

async function mediaPart(type: 'image' | 'video', file: string): Promise<Part> {
  try {
    return { type, data: (await fs.promises.readFile(file)).toString('base64') }
  } catch (err) {
    throw new DatasetError(`cannot read ${type} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

/** The response (last assistant message) as plain text, for reports. */
export function responseText(ms: Message[]): string {
  const last = ms[ms.length - 1]
  return contentText(last.content)
}

export function contentText(c: Content): string {
  if (typeof c === 'string') return c
  return c.map((p) => (p.type === 'text' ? p.text : `<${p.type}>`)).join('')
}
