// The README's curl examples against the real service on the embedded default model (scripts/readme-examples.ts):
// every printed answer that is one JSON document must be what the service answers today, so a retrain or an API
// change that forgets the README goes red here (`npm run docs:examples` rewrites them).
import { readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { differences, parseExamples, ROOT, runExamples, splitAnswer } from '../../scripts/readme-examples.ts'

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')

t.test('the comparison: floats within 1e-4 relative, … as a wildcard, generated ids by shape', async (t) => {
  t.same(differences({ s: [1.00001, 'a'] }, { s: [1.00002, 'a'] }), [])
  t.equal(differences({ s: [1.0] }, { s: [1.001] }).length, 1)
  t.equal(differences({ s: 1 }, { s: 1, t: 2 }).length, 1, 'a new key is a difference')
  t.equal(differences([1, 2], [1]).length, 1)
  t.same(differences('sha256 … is not cached', 'sha256 ab12 is not cached'), [])
  t.equal(differences('sha256 … is not cached', 'sha256 ab12 is cached').length, 1)
  t.same(differences(`rerank-${'a'.repeat(32)}`, `rerank-${'0'.repeat(32)}`), [])
  t.equal(differences(`rerank-${'a'.repeat(32)}`, `embd-${'0'.repeat(32)}`).length, 1)
  t.same(splitAnswer('{"a":1} HTTP 415'), { json: { a: 1 }, tail: ' HTTP 415' })
  t.equal(splitAnswer('{"a":1}\n{"b":2}'), null)
})

t.test('every README example that prints one JSON answer is what the service answers', async (t) => {
  const outcomes = await runExamples(readme, { THREADS: '1', CHECKSUM_CACHE: 'off' })
  t.equal(outcomes.length, parseExamples(readme).length)
  const compared = outcomes.filter((o) => o.diffs !== null)
  // the score, compare, rank, image, video, get_reward, media-reference, error and rerank examples at least
  t.ok(compared.length >= 9, `${compared.length} examples compared`)
  for (const o of outcomes) {
    if (o.diffs === null) t.comment(`README.md:${o.example.line}: several commands' output, shown but not compared`)
    else t.same(o.diffs, [], `README.md:${o.example.line}`)
  }
})

t.test('a printed score that drifted is found', async (t) => {
  const [first] = parseExamples(readme)
  const score = /"scores": ?\[(-?[0-9.]+)/.exec(first!.expected)![1]!
  const drifted = readme.slice(0, first!.start) + first!.expected.replace(score, String(Number(score) + 0.01)) + readme.slice(first!.end)
  t.not(drifted, readme)
  const outcomes = await runExamples(drifted, { THREADS: '1', CHECKSUM_CACHE: 'off' })
  t.ok(outcomes[0]!.diffs!.length > 0, outcomes[0]!.diffs!.join('; '))
})
