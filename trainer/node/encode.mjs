// Encode strings with the tokenizer library the service uses, so pytest can compare ids with sentencepiece.
// usage: node encode.mjs <tokenizer.json>  (stdin: JSON array of strings) -> stdout: JSON array of id arrays
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(repoRoot, 'package.json'));
const { Tokenizer } = require('@huggingface/tokenizers');

const tokenizer = new Tokenizer(JSON.parse(readFileSync(process.argv[2], 'utf8')), {});
const texts = JSON.parse(readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(texts.map((t) => tokenizer.encode(t, { add_special_tokens: false }).ids)));
