// OpenRLHF query parsing (src/rlhf/query-template.ts) at its edges: role aliases, marker-only turns, detection
// order, each family's strip list, the plain split's branches and where the response starts. Written against
// the mutants test/rlhf/query-template.test.ts lets live (npm run test:mutation -- query-template).
import t from 'tap'
import {
  QUERY_TEMPLATES,
  QueryParseError,
  detectQueryTemplate,
  parseQuery,
  parseTemplatedQuery,
  splitPlainQuery,
  stripEdgeTokens,
  suffixPrefixOverlap,
} from '../../src/rlhf/query-template.ts'

const msgs = (q: string, p: string | undefined, name: string) => parseQuery(q, p, name).messages
const chatml = (role: string, content: string) => `<|im_start|>${role}\n${content}<|im_end|>\n`

t.test('role names: aliases, case and spaces; tool results are user turns', async (t) => {
  const q = chatml(' System ', 'S') + chatml('Human', 'H') + chatml('tool', 'T') + chatml('ipython', 'I') + chatml('bot', 'B') +
    chatml('user', 'U') + chatml('assistant', 'A')
  t.same(msgs(q, chatml(' System ', 'S') + chatml('Human', 'H') + chatml('tool', 'T') + chatml('ipython', 'I') + chatml('bot', 'B') + chatml('user', 'U') + '<|im_start|>assistant\n', 'chatml'), [
    { role: 'system', content: 'S' },
    { role: 'user', content: 'H' },
    { role: 'user', content: 'T' },
    { role: 'user', content: 'I' },
    { role: 'assistant', content: 'B' },
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
  for (const name of ['gpt', 'GPT', 'model', 'bot', 'assistant']) {
    // without the prompt, the first turn of any assistant alias starts the response
    t.same(msgs(chatml('user', 'U') + chatml(name, 'A'), undefined, 'chatml'), [{ role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }], name)
  }
  t.same(parseTemplatedQuery(chatml('SYSTEM', 'S') + chatml('user', 'U'), QUERY_TEMPLATES.chatml!, { keepDefaultSystem: true }), [
    { role: 'system', content: 'S' },
    { role: 'user', content: 'U' },
  ])
})

t.test('a marker with no role line: empty or system turns vanish, a named one is an empty turn', async (t) => {
  const T = QUERY_TEMPLATES.chatml!
  t.same(parseTemplatedQuery(`<|im_start|><|im_end|>${chatml('user', 'U')}<|im_start|>assistant\nA`, T), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
  t.same(parseTemplatedQuery(`<|im_start|>system<|im_end|>${chatml('user', 'U')}<|im_start|>assistant\nA`, T), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
  t.same(parseTemplatedQuery(`${chatml('user', 'U')}<|im_start|>user<|im_end|><|im_start|>assistant\nA`, T), [
    { role: 'user', content: 'U' },
    { role: 'user', content: '' },
    { role: 'assistant', content: 'A' },
  ])
  // the role line ends after the next opening: the marker is role-less, the next turn is parsed on its own
  t.same(parseTemplatedQuery(`${chatml('user', 'U')}<|im_start|>user<|im_start|>assistant\nA`, T), [
    { role: 'user', content: 'U' },
    { role: 'user', content: '' },
    { role: 'assistant', content: 'A' },
  ])
  // an empty system turn is dropped even when default system prompts are kept
  t.same(parseTemplatedQuery(`${chatml('system', '')}${chatml('user', 'U')}`, T, { keepDefaultSystem: true }), [{ role: 'user', content: 'U' }])
  // keepDefaultSystem returns the turns as they are: no empty assistant turn appended
  t.same(parseTemplatedQuery(chatml('user', 'U'), T, { keepDefaultSystem: true }), [{ role: 'user', content: 'U' }])
  t.same(parseTemplatedQuery(chatml('user', 'U'), T), [{ role: 'user', content: 'U' }, { role: 'assistant', content: '' }])
})

t.test('llama3 system preamble: ipython line, no trailing newline, only at the start', async (t) => {
  const T = QUERY_TEMPLATES.llama3!
  const turn = (role: string, c: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n${c}<|eot_id|>`
  const rest = turn('user', 'U') + turn('assistant', 'A')
  t.same(parseTemplatedQuery(turn('system', 'Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe terse.') + rest, T)[0], {
    role: 'system',
    content: 'Be terse.',
  })
  // the preamble alone (no newline after the date): nothing is left, the system turn is dropped
  t.same(parseTemplatedQuery(turn('system', 'Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024') + rest, T), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
  // not at the start: kept verbatim (it is the user's text then)
  const inner = 'Be terse.\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024'
  t.same(parseTemplatedQuery(turn('system', inner) + rest, T)[0], { role: 'system', content: inner })
  // a user turn is never cut, whatever it starts with
  const user = 'Cutting Knowledge Date: x\nToday Date: y\nQ'
  t.same(parseTemplatedQuery(turn('user', user) + turn('assistant', 'A'), T)[0], { role: 'user', content: user })
})

t.test('detection: each family by its markers, in a fixed order', async (t) => {
  const name = (q: string) => detectQueryTemplate(q)?.name ?? null
  t.equal(name('<|start_header_id|>user<|end_header_id|>[UNUSED_TOKEN_146]<start_of_turn><|user|><|im_start|>[INST]'), 'llama3')
  t.equal(name('[UNUSED_TOKEN_146]user\n<start_of_turn><|user|><|im_start|>[INST]'), 'ixc')
  t.equal(name('<start_of_turn>user\n<|user|><|im_start|>[INST]'), 'gemma')
  t.equal(name('<|user|>\nq<|im_start|>[INST]'), 'phi3')
  t.equal(name('<|assistant|>\na'), 'phi3', 'phi3 by its assistant marker alone')
  t.equal(name('<|im_start|>user\nq<|im_end|>[INST]'), 'chatml')
  t.equal(name('[INST] q'), 'mistral')
  t.equal(name('a [/INST] b'), 'mistral', 'mistral by [/INST] alone')
  t.equal(name('<|endoftext|><s><|im_start|>user\nq'), 'internlm2', 'left padding before the BOS')
  t.equal(name('<s> <|im_start|>user\nq'), 'internlm2')
  t.equal(name('x<s><|im_start|>user\nq'), 'chatml', 'text before the BOS: not InternLM2\'s layout')
  t.equal(name('<s><s><|im_start|>user\nq'), 'chatml')
  t.equal(name('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nq'), 'qwen2')
  t.equal(name('<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nq'), 'chatml')
  t.equal(name('<|im_start|>user\nYou are a helpful assistant.<|im_end|>'), 'chatml', 'the default prompt in a user turn is not Qwen\'s')
  t.equal(name('plain text'), null)
})

t.test('each family strips its own BOS/EOS/pad strings', async (t) => {
  const expected = [{ role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }]
  const cases: Array<[string, string]> = [
    ['gemma', '<pad><bos><start_of_turn>user\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn><eos><pad>'],
    ['phi3', '<s><|user|>\nU<|end|>\n<|assistant|>\nA<|end|></s><|endoftext|>'],
    ['mistral', '<pad><s>[INST] U [/INST] A</s><pad>'],
    ['llama3', '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eom_id|><|end_of_text|>'],
    ['ixc', '<s>[UNUSED_TOKEN_146]user\nU[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\nA[UNUSED_TOKEN_145]</s>[UNUSED_TOKEN_130]'],
    ['internlm2', '<s><|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|></s>'],
    ['qwen2', '<|endoftext|><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|><|endoftext|>'],
    ['chatml', '</s><|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|><s></s>'],
  ]
  for (const [name, q] of cases) {
    t.same(msgs(q, undefined, name), expected, name)
    t.same(parseQuery(q, undefined, 'auto'), { messages: expected, template: name }, `${name} (auto)`)
  }
  // strings of other families are content
  t.same(msgs('<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<eos>', undefined, 'chatml')[1], { role: 'assistant', content: 'A<eos>' })
})

t.test('mistral turn ends: </s> and [/SYSTEM_PROMPT]; fixed-role markers open turns without a role line', async (t) => {
  const T = QUERY_TEMPLATES.mistral!
  t.same(parseTemplatedQuery('[SYSTEM_PROMPT]S[/SYSTEM_PROMPT]junk[INST]U[/INST]A</s>tail', T), [
    { role: 'system', content: 'S' },
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
  // without a prompt the response starts at the first fixed assistant marker
  t.same(msgs('[INST]U[/INST]A</s>[INST]V[/INST]B', undefined, 'mistral'), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A</s>[INST]V[/INST]B' },
  ])
  t.same(msgs('[INST]U[/TOOL_RESULTS]A', undefined, 'mistral'), [{ role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }])
})

t.test('stripEdgeTokens: runs of tokens and ASCII whitespace at both ends only', async (t) => {
  t.equal(stripEdgeTokens(' \t\r\n</s> x </s> \t\r\n', ['</s>']), 'x')
  t.equal(stripEdgeTokens('</s> \n</s>x y</s>\t</s>', ['</s>']), 'x y')
  t.equal(stripEdgeTokens('\vx\u00a0', ['</s>']), '\vx\u00a0', 'other whitespace is content')
  t.equal(stripEdgeTokens('a</s>b', ['</s>']), 'a</s>b', 'inner tokens stay')
  t.equal(stripEdgeTokens('<s></s><s>x</s><s>', ['<s>', '</s>']), 'x', 'mixed runs, either order')
  t.equal(stripEdgeTokens('x', ['', 'x']), '', 'an empty token is ignored, not an endless loop')
  t.equal(stripEdgeTokens('xyx', ['xyx']), '', 'a token that is the whole text')
  t.equal(stripEdgeTokens('ab', ['abc']), 'ab', 'a token longer than the text')
  t.equal(stripEdgeTokens('', ['</s>']), '')
  t.equal(stripEdgeTokens('   ', []), '')
})

t.test('suffixPrefixOverlap: the longest suffix of a that starts b', async (t) => {
  t.equal(suffixPrefixOverlap('xxabab', 'ababz'), 4)
  t.equal(suffixPrefixOverlap('aab', 'aab'), 3, 'the whole of b')
  t.equal(suffixPrefixOverlap('abcab', 'abd'), 2)
  t.equal(suffixPrefixOverlap('', 'abc'), 0)
  t.equal(suffixPrefixOverlap('abc', ''), 0)
  t.equal(suffixPrefixOverlap('aabaab', 'aabx'), 3, 'falls back along the failure links')
})

t.test('plain: the prompt found anywhere, or overlapping the query\'s head; EOS-like strings stripped', async (t) => {
  t.same(splitPlainQuery('garbage P1 answer', 'P1'), [{ role: 'user', content: 'P1' }, { role: 'assistant', content: 'answer' }])
  t.same(splitPlainQuery('P1 P1 answer', 'P1'), [{ role: 'user', content: 'P1' }, { role: 'assistant', content: 'P1 answer' }], 'the first occurrence')
  t.same(splitPlainQuery('<|endoftext|>P1 answer<|im_end|><eos>', '<s>P1</s>'), [
    { role: 'user', content: 'P1' },
    { role: 'assistant', content: 'answer' },
  ])
  t.same(splitPlainQuery('mpt: answer', 'Long prompt:'), [{ role: 'user', content: 'Long prompt:' }, { role: 'assistant', content: 'answer' }])
  t.throws(() => splitPlainQuery('answer', '</s>'), /needs the prompt/)
  t.throws(() => splitPlainQuery('answer', ''), /needs the prompt/)
})

t.test('where the response starts: the given prompt, else the first assistant opening', async (t) => {
  const q = chatml('user', 'U') + '<|im_start|>assistant\nA' + chatml('user', 'V')
  const folded = [{ role: 'user', content: 'U' }, { role: 'assistant', content: 'A<|im_start|>user\nV' }]
  // the prompt is found after left padding
  t.same(msgs(`<|endoftext|>${q}`, `${chatml('user', 'U')}<|im_start|>assistant\n`, 'chatml'), folded)
  // a prompt that is not in the query at all: the first assistant opening decides
  t.same(msgs(q, 'something else entirely', 'chatml'), folded)
  // an empty prompt string is no prompt
  t.same(msgs(q, '', 'chatml'), msgs(q, undefined, 'chatml'))
  // the prompt's head cut by left truncation: the overlap says where the response starts
  const prompt = `${chatml('user', 'A long question')}<|im_start|>assistant\n`
  const cut = prompt.slice(20) + 'Answer'
  t.same(msgs(cut, prompt, 'chatml').at(-1), { role: 'assistant', content: 'Answer' })
  // a named opening with its role line past the next opening is not the assistant's
  t.same(msgs(`${chatml('user', 'U')}<|im_start|>assistant<|im_start|>user\nV<|im_end|>`, undefined, 'chatml'), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: '' },
    { role: 'user', content: 'V' },
    { role: 'assistant', content: '' },
  ])
  // no assistant opening at all: the whole query is prompt, the response is empty
  t.same(msgs(chatml('user', 'U') + chatml('user', 'V'), undefined, 'chatml'), [
    { role: 'user', content: 'U' },
    { role: 'user', content: 'V' },
    { role: 'assistant', content: '' },
  ])
})

t.test('refusals name the way out', async (t) => {
  const e = (() => {
    try {
      parseQuery('no markers', undefined, 'auto')
    } catch (err) {
      return err as Error
    }
  })()
  t.ok(e instanceof QueryParseError)
  t.equal(e?.name, 'QueryParseError')
  t.match(e?.message, /\(chatml, qwen2, llama3, internlm2, ixc, gemma, phi3, mistral\); name the policy template/)
  t.throws(() => parseQuery('x', 'x', 'vicuna'), /unknown query template "vicuna" \(known: auto, auto_or_plain, plain, chatml, qwen2, .*, mistral\)/)
  t.throws(() => parseQuery('no markers', undefined, 'phi3'), /query has no phi3 turn marker "<\|assistant\|> \/ <\|system\|> \/ <\|user\|>"/)
  t.throws(() => parseQuery('no markers', undefined, 'chatml'), /query has no chatml turn marker "<\|im_start\|>"/)
  t.throws(() => parseQuery('P answer', undefined, 'auto_or_plain'), /template "plain" needs the prompt/)
  t.same(parseQuery('P answer', 'P', 'plain'), { messages: [{ role: 'user', content: 'P' }, { role: 'assistant', content: 'answer' }], template: 'plain' })
})

t.test('text between a turn end and the next opening is not content; orphan text loses its turn end', async (t) => {
  const cases: Array<[string, (r: string, c: string) => string, string]> = [
    ['chatml', (r, c) => `<|im_start|>${r}\n${c}<|im_end|>junk`, '<|im_end|>'],
    ['qwen2', (r, c) => `<|im_start|>${r}\n${c}<|im_end|>junk`, '<|im_end|>'],
    ['internlm2', (r, c) => `<|im_start|>${r}\n${c}<|im_end|>junk`, '<|im_end|>'],
    ['llama3', (r, c) => `<|start_header_id|>${r}<|end_header_id|>\n\n${c}<|eot_id|>junk`, '<|eot_id|>'],
    ['ixc', (r, c) => `[UNUSED_TOKEN_146]${r}\n${c}[UNUSED_TOKEN_145]junk`, '[UNUSED_TOKEN_145]'],
    ['gemma', (r, c) => `<start_of_turn>${r}\n${c}<end_of_turn>junk`, '<end_of_turn>'],
    ['phi3', (r, c) => `<|${r}|>\n${c}<|end|>junk`, '<|end|>'],
    ['mistral', (r, c) => (r === 'user' ? `[INST]${c}</s>junk` : `[/INST]${c}</s>junk`), '</s>'],
  ]
  for (const [name, turn, end] of cases) {
    const T = QUERY_TEMPLATES[name]!
    t.same(parseTemplatedQuery(`tail of a cut turn${end}${turn('user', 'U')}${turn('assistant', 'A')}`, T), [
      { role: 'user', content: 'tail of a cut turn' },
      { role: 'user', content: 'U' },
      { role: 'assistant', content: 'A' },
    ], name)
  }
  t.same(parseTemplatedQuery('tail</s>[INST]U[/INST]A', QUERY_TEMPLATES.mistral!)[0], { role: 'user', content: 'tail' }, 'mistral strips </s> too')
})

t.test('orphan text is kept whatever it contains; a marker near the start is found once', async (t) => {
  t.same(msgs(`Some tail.<|im_end|>\n${chatml('user', 'U')}<|im_start|>assistant\nA`, undefined, 'chatml')[0], { role: 'user', content: 'Some tail.' })
  t.same(msgs('undefined tail<|user|>\nis it undefined?<|end|>\n<|assistant|>\nA', undefined, 'phi3'), [
    { role: 'user', content: 'undefined tail' },
    { role: 'user', content: 'is it undefined?' },
    { role: 'assistant', content: 'A' },
  ])
  t.same(msgs(` ${chatml('user', 'U')}<|im_start|>assistant\nA`, undefined, 'chatml'), [{ role: 'user', content: 'U' }, { role: 'assistant', content: 'A' }], 'a marker at index 1')
  t.same(msgs(`x${chatml('user', 'U')}${chatml('user', 'V')}<|im_start|>assistant\nA`, undefined, 'chatml'), [
    { role: 'user', content: 'x' },
    { role: 'user', content: 'U' },
    { role: 'user', content: 'V' },
    { role: 'assistant', content: 'A' },
  ])
})

t.test('empty turns: an empty user turn is kept, an empty system turn dropped; a role line cut after its name', async (t) => {
  t.same(msgs(chatml('user', '') + chatml('system', '') + chatml('user', 'U') + '<|im_start|>assistant\nA', undefined, 'chatml'), [
    { role: 'user', content: '' },
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
  t.same(parseTemplatedQuery(`<|im_start|>system<|im_end|>\n${chatml('user', 'U')}`, QUERY_TEMPLATES.chatml!, { keepDefaultSystem: true }), [{ role: 'user', content: 'U' }])
  // the generation header cut one character after the role name (no newline yet): an empty response
  t.same(msgs(`${chatml('user', 'U')}<|im_start|>assistant `, undefined, 'chatml'), [{ role: 'user', content: 'U' }, { role: 'assistant', content: '' }])
  t.equal(detectQueryTemplate('<|im_start|><|im_end|>'), QUERY_TEMPLATES.chatml, 'a ChatML query with no turn at all is not Qwen\'s, and no crash')
})

t.test('the response after a prompt that ends with a whole assistant turn is a turn of its own', async (t) => {
  const prompt = chatml('user', 'U') + chatml('assistant', 'A1')
  t.same(msgs(`${prompt}A2`, prompt, 'chatml'), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A1' },
    { role: 'assistant', content: 'A2' },
  ])
})

t.test('multi-turn prompts: found after padding, or cut on the left; the response starts where the prompt ends', async (t) => {
  const prompt = chatml('user', 'A long first question') + chatml('assistant', 'Hi') + chatml('user', 'U') + '<|im_start|>assistant\n'
  const want = [{ role: 'user', content: 'A long first question' }, { role: 'assistant', content: 'Hi' }, { role: 'user', content: 'U' }, { role: 'assistant', content: 'Answer' }]
  t.same(msgs(`<|endoftext|><|endoftext|>${prompt}Answer<|im_end|>`, prompt, 'chatml'), want, 'after left padding')
  const cut = prompt.slice(30)
  t.same(msgs(`${cut}Answer<|im_end|>`, prompt, 'chatml').slice(-3), want.slice(-3), 'left-truncated')
})

t.test('more edges: plain prompt at the end of the query, overlap needs the separator, token overlapping the head', async (t) => {
  t.same(splitPlainQuery('junk P', 'P'), [{ role: 'user', content: 'P' }, { role: 'assistant', content: '' }])
  t.equal(suffixPrefixOverlap('b', 'bb'), 1, 'never longer than a')
  t.equal(suffixPrefixOverlap('ab', 'abab'), 2)
  t.equal(stripEdgeTokens('<s>x', ['<s>', 's>x']), 'x', 'a tail token overlapping the stripped head is not stripped')
})

t.test('a marker whose role line is only spaces is no turn (not an empty turn of some role)', async (t) => {
  const T = QUERY_TEMPLATES.chatml!
  t.same(parseTemplatedQuery(`<|im_start|>   <|im_end|>${chatml('user', 'U')}<|im_start|>assistant\nA`, T), [
    { role: 'user', content: 'U' },
    { role: 'assistant', content: 'A' },
  ])
})

t.test('a prompt without a generation header: the response is a new assistant turn, the last user turn stays', async (t) => {
  const p = chatml('user', 'Hi')
  t.same(msgs(p + 'Hello there', p, 'chatml'), [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello there' },
  ])
})
