// Dataset readers on the real fixtures (hh-rlhf, LLaMA-Factory) and on our JSONL with media from disk.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { arrayElementLines, countRecords, detectFormat, readDataset, splitHhTranscript, type DatasetRow } from '../../src/cli/datasets.ts'
import { encodePng } from '../../src/preprocess/image/sharp.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const fixtures = path.resolve(root, '../shared/fixtures/preference')

async function take(file: string, n: number, format: 'auto' | 'ours' | 'hh-rlhf' | 'llamafactory' = 'auto') {
  const out: DatasetRow[] = []
  for await (const r of readDataset(file, { format })) {
    out.push(r)
    if (out.length >= n) break
  }
  return out
}

t.test('hh-rlhf transcripts (gzip) become alternating conversations', async (t) => {
  const file = path.join(fixtures, 'hh-rlhf-harmless-base-test.jsonl.gz')
  t.equal(await countRecords(file), 2312)
  const rows = await take(file, 3)
  t.equal(rows[0]!.id, 'hh-rlhf-0')
  const s = rows[0] as Extract<DatasetRow, { chosen: unknown }>
  t.same(s.chosen.slice(0, 3).map((m) => m.role), ['user', 'assistant', 'user'])
  t.equal(s.chosen[0]!.content, 'what are some pranks with a pen i can do?')
  t.equal(s.chosen[s.chosen.length - 1]!.role, 'assistant')
  t.ok(s.rejected && s.rejected[s.rejected.length - 1]!.role === 'assistant')
  t.same(splitHhTranscript('\n\nHuman: hi\n\nAssistant: yo\n\nHuman: ok?\n\nAssistant:'), [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'yo' },
    { role: 'user', content: 'ok?' },
    { role: 'assistant', content: '' },
  ])
})

t.test('LLaMA-Factory sharegpt json and v1 jsonl', async (t) => {
  const json = await take(path.join(fixtures, 'llamafactory-dpo_en_demo.json'), 2)
  const a = json[0] as Extract<DatasetRow, { chosen: unknown }>
  t.equal(a.id, 'llamafactory-0')
  t.same(a.chosen.map((m) => m.role), ['user', 'assistant'])
  t.not(a.chosen[1]!.content, a.rejected![1]!.content)
  const v1 = await take(path.join(fixtures, 'llamafactory-v1_dpo_demo.jsonl'), 10)
  t.equal(v1.length, 10)
  const b = v1[0] as Extract<DatasetRow, { chosen: unknown }>
  t.same(b.chosen.map((m) => m.role), ['system', 'user', 'assistant'])
  t.match(b.chosen[2]!.content as string, /Abdulah Hasanagic is the proud owner/)
})

t.test('our JSONL: media paths inlined at the start of the first user turn; bad rows are skips', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clean-ds-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const png = await encodePng(2, 1, new Uint8Array([255, 0, 0, 0, 0, 255]))
  fs.mkdirSync(path.join(dir, 'img'))
  fs.writeFileSync(path.join(dir, 'img', 'a.png'), png)
  const rows = [
    { id: 'p1', category: 'count', messages: [{ role: 'user', content: 'How many dots?' }], chosen: 'Two.', rejected: 'Three.', images: ['img/a.png'], videos: [] },
    { id: 'p2', messages: [{ role: 'user', content: 'hi' }], chosen: [{ role: 'assistant', content: 'hello' }], rejected: 'go away' },
    { id: 'p3', messages: [{ role: 'user', content: 'x' }], chosen: 'y', rejected: 'z', images: ['img/missing.png'] },
    { id: 'p4', messages: [{ role: 'robot', content: 'x' }], chosen: 'y', rejected: 'z' },
    { id: 'p5', messages: [{ role: 'user', content: 'rate me' }, { role: 'assistant', content: 'ok' }] },
  ]
  const file = path.join(dir, 'data.jsonl')
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\nnot json\n')
  t.equal(detectFormat(rows[0]), 'ours')
  const got = await take(file, 10)
  t.equal(got.length, 6)
  const p1 = got[0] as Extract<DatasetRow, { chosen: unknown }>
  t.equal(p1.category, 'count')
  t.same(p1.chosen[0]!.content, [
    { type: 'image', data: png.toString('base64') },
    { type: 'text', text: 'How many dots?' },
  ])
  t.same(p1.chosen[1], { role: 'assistant', content: 'Two.' })
  t.same((got[1] as Extract<DatasetRow, { chosen: unknown }>).rejected![1], { role: 'assistant', content: 'go away' })
  t.match((got[2] as { skip: string }).skip, /cannot read image .*missing\.png: ENOENT/)
  t.match((got[3] as { skip: string }).skip, /unknown role "robot"/)
  const p5 = got[4] as Extract<DatasetRow, { chosen: unknown }>
  t.equal(p5.rejected, undefined, 'unpaired sample')
  t.match((got[5] as { skip: string }).skip, /not valid JSON/)
  // Every row says where it came from.
  t.same(got.map((r) => r.where), [1, 2, 3, 4, 5, 6].map((n) => `${file}:${n}`))
})

t.test('input errors name the file and line: JSONL skips, a .json array, bad JSON, undetectable format', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clean-lines-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const good = { messages: [{ role: 'user', content: 'q' }], chosen: 'a', rejected: 'b' }
  // JSONL with blank lines: line numbers are the file's, not the record's.
  const jsonl = path.join(dir, 'd.jsonl')
  fs.writeFileSync(jsonl, [JSON.stringify(good), '', '{"messages": [', '', JSON.stringify({ ...good, messages: 'x' })].join('\n') + '\n')
  const rows = await take(jsonl, 10)
  t.same(rows.map((r) => [r.where, 'skip' in r ? r.skip.split(' (')[0] : 'ok']), [
    [`${jsonl}:1`, 'ok'],
    [`${jsonl}:3`, 'not valid JSON'],
    [`${jsonl}:5`, '"messages" must be a list'],
  ])
  // A .json array, pretty-printed: each record's first line (strings with brackets and commas do not confuse it).
  const json = path.join(dir, 'd.json')
  fs.writeFileSync(json, JSON.stringify([good, { ...good, chosen: 'a, [b] {c} "d"' }, { messages: 5 }], null, 2))
  const jrows = await take(json, 10)
  const starts = fs.readFileSync(json, 'utf8').split('\n').flatMap((l, i) => (l === '  {' ? [i + 1] : []))
  t.equal(starts.length, 3)
  t.same(jrows.map((r) => r.where), starts.map((n) => `${json}:${n}`))
  t.match((jrows[2] as { skip: string }).skip, /"messages" must be a list/)
  t.same(arrayElementLines('[1,\n "a,]",\n [2, 3], {"x": [4]}]'), [1, 2, 3, 3])
  // Invalid JSON in a .json file: the error names the line (Node 20 reports a position, Node 22 a line).
  const broken = path.join(dir, 'broken.json')
  fs.writeFileSync(broken, '[\n  {"a": 1},\n  {"b": }\n]')
  await t.rejects(take(broken, 1), new RegExp(`${broken.replace(/[.]/g, '\\.')}:3: not valid JSON`))
  // No recognisable first record: the message names where and what to pass.
  const odd = path.join(dir, 'odd.jsonl')
  fs.writeFileSync(odd, '\n{"text": "hello"}\n')
  await t.rejects(take(odd, 1), new RegExp(`${odd.replace(/[.]/g, '\\.')}:2: cannot detect the dataset format .*--format \\(ours, hh-rlhf, llamafactory\\)`))
  await t.rejects(take(path.join(dir, 'missing.jsonl'), 1), /missing\.jsonl:1: cannot read \(ENOENT\)/)
})
