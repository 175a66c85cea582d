// Dataset readers on the real fixtures (hh-rlhf, LLaMA-Factory) and on our JSONL with media from disk.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { countRecords, detectFormat, readDataset, splitHhTranscript, type DatasetRow } from '../../src/cli/datasets.ts'
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
  t.match((got[5] as { skip: string }).skip, /not a JSON object/)
})
