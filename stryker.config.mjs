// StrykerJS mutation testing of the core modules (issue 12), run one module at a time by
// scripts/mutation.sh (`npm run test:mutation [module ...]`). Stryker has no tap runner, so each module uses the
// command runner on just the test files that cover it (run straight with node + tsx: ~1-5 s a mutant instead of
// tap's per-file start-up). The command runner has no per-test coverage, so every mutant runs the whole command:
// keep each module's list short. Results: reports/mutation/<module>.{json,html}; scores in test/README.md.
import { existsSync } from 'node:fs'

// test/mutation/<module>.test.ts files are named before they exist (a module not yet worked on runs without)
const tests = (...files) => files.filter((f) => existsSync(f)).map((f) => `node --import tsx ${f}`).join(' && ')

export const modules = {
  'batch-policy': {
    mutate: ['src/scheduler/batch-policy.ts'],
    command: tests('test/scheduler/batch-policy.test.ts', 'test/mutation/batch-policy.test.ts'),
  },
  batcher: {
    mutate: ['src/scheduler/batcher.ts'],
    command: tests('test/scheduler/batcher.test.ts', 'test/mutation/batcher.test.ts', 'test/scheduler/coalesce.test.ts'),
  },
  coalesce: {
    mutate: ['src/scheduler/coalesce.ts'],
    command: tests('test/scheduler/coalesce.test.ts'),
  },
  errors: {
    mutate: ['src/errors.ts'],
    // its only direct test; the HTTP suites (http-semantics: ~5 s a run) exercise it through the error handler
    command: tests('test/mutation/errors.test.ts'),
  },
  'hd-transform': {
    mutate: ['src/preprocess/image/hd-transform.ts'],
    command: tests('test/preprocess/image-transform.test.ts', 'test/mutation/hd-transform.test.ts'),
  },
  encode: {
    mutate: ['src/conversation/encode.ts'],
    command: tests('test/conversation/encode.test.ts', 'test/conversation/published.test.ts', 'test/mutation/encode.test.ts'),
  },
  'query-template': {
    mutate: ['src/rlhf/query-template.ts'],
    command: tests('test/rlhf/query-template.test.ts', 'test/mutation/query-template.test.ts'),
  },
  'get-reward': {
    mutate: ['src/http/routes/get-reward.ts'],
    command: tests('test/http/routes/get-reward.test.ts', 'test/mutation/get-reward.test.ts'),
  },
  auth: {
    mutate: ['src/http/plugins/auth.ts', 'src/http/plugins/rate-limit.ts'],
    command: tests('test/http/auth.test.ts', 'test/mutation/auth.test.ts'),
  },
}

const name = process.env.MUTATION_MODULE ?? ''
const mod = modules[name]
if (!mod) throw new Error(`MUTATION_MODULE must be one of: ${Object.keys(modules).join(', ')} (got '${name}')`)
// MUTATION_BASELINE=1 measures the suite as it was before test/mutation/ (the "before" column).
const command = process.env.MUTATION_BASELINE === '1'
  ? mod.command.split(' && ').filter((c) => !c.includes('test/mutation/')).join(' && ')
  : mod.command

// MUTATION_MUTATE=file:line-line,... narrows a run to some lines (re-checking survivors); its report is .partial
const partial = process.env.MUTATION_MUTATE ? '.partial' : ''
const suffix = `${process.env.MUTATION_BASELINE === '1' ? '.before' : ''}${partial}`

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: process.env.MUTATION_MUTATE ? process.env.MUTATION_MUTATE.split(',') : mod.mutate,
  testRunner: 'command',
  // TAP_TIMEOUT as the suite's (package.json tap.timeout): tap's own 30 s default, run straight with node, fails
  // the dry run of a slower file on a loaded host; a hanging mutant is still caught by Stryker's timeout below
  commandRunner: { command: `nice -n 10 env TAP_TIMEOUT=300 sh -c '${command}'` },
  coverageAnalysis: 'off',
  concurrency: 1,
  // the slowest command takes ~5 s on an idle core; a mutant that makes a test wait for a timer gets 1.5x + 8 s
  timeoutFactor: 1.5,
  timeoutMS: 8000,
  reporters: ['clear-text', 'json', 'html', 'progress-append-only'],
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
  jsonReporter: { fileName: `reports/mutation/${name}${suffix}.json` },
  htmlReporter: { fileName: `reports/mutation/${name}${suffix}.html` },
  tempDirName: `.stryker-tmp-${name}`, // one per module: modules can run side by side
  cleanTempDir: true,
  ignorePatterns: ['reports', 'trainer', 'clients', '.tap', '.stryker-tmp*'],
  thresholds: { high: 90, low: 75, break: null },
}
