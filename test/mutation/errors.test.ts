// The error table and its helpers (src/errors.ts), table-tested: no other test asserted them directly.
import t from 'tap'
import { ERROR_STATUS, ServiceError, errorType, isServiceError, issuePath, issuesText, validationError } from '../../src/errors.ts'

t.test('errorType follows the status class (OpenAI SDK types)', async (t) => {
  const want: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    403: 'permission_error',
    404: 'not_found_error',
    405: 'invalid_request_error',
    413: 'invalid_request_error',
    415: 'invalid_request_error',
    422: 'invalid_request_error',
    429: 'rate_limit_error',
    499: 'invalid_request_error',
    500: 'server_error',
    503: 'server_error',
    504: 'server_error',
  }
  for (const [code, status] of Object.entries(ERROR_STATUS)) {
    // a status added later falls in its class: 5xx server_error, other 4xx invalid_request_error
    const expected = want[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
    t.equal(errorType(code as keyof typeof ERROR_STATUS), expected, `${code} (${status})`)
  }
})

t.test('ServiceError carries code, status, headers and param', async (t) => {
  const e = new ServiceError('overloaded', 'busy', { 'retry-after': '3' }, 'items[0]')
  t.ok(e instanceof Error)
  t.equal(e.name, 'ServiceError')
  t.equal(e.message, 'busy')
  t.equal(e.code, 'overloaded')
  t.equal(e.status, 503)
  t.same(e.headers, { 'retry-after': '3' })
  t.equal(e.param, 'items[0]')
  const d = new ServiceError('timeout', 'late')
  t.equal(d.status, 504)
  t.same(d.headers, {})
  t.equal(d.param, null)
  t.ok(isServiceError(e))
  t.notOk(isServiceError(new Error('x')))
  t.notOk(isServiceError({ code: 'overloaded', status: 503 }))
})

t.test('issuePath: dots between names, brackets for indices, empty for the root', async (t) => {
  t.equal(issuePath([]), '')
  t.equal(issuePath(['items']), 'items')
  t.equal(issuePath(['items', 0, 'messages']), 'items[0].messages')
  t.equal(issuePath([0, 'a', 'b', 2, 3]), '[0].a.b[2][3]')
  t.equal(issuePath([Symbol.for('s')]), 'Symbol(s)')
})

t.test('issuesText joins path: message with "; "; root issues have no prefix', async (t) => {
  t.equal(issuesText([]), '')
  t.equal(
    issuesText([
      { path: ['items', 1], message: 'Required' },
      { path: [], message: 'Bad body' },
    ]),
    'items[1]: Required; Bad body',
  )
})

t.test('validationError: 422 listing every issue, param = the first issue path', async (t) => {
  const e = validationError([
    { path: ['model'], message: 'Expected string' },
    { path: ['items', 0], message: 'Required' },
  ])
  t.equal(e.code, 'invalid_request')
  t.equal(e.status, 422)
  t.equal(e.message, 'model: Expected string; items[0]: Required')
  t.equal(e.param, 'model')
  t.same(e.headers, {})
  const root = validationError([{ path: [], message: 'Expected object' }], 'bad_request')
  t.equal(root.code, 'bad_request')
  t.equal(root.param, null, 'root issue: no param')
  t.equal(root.message, 'Expected object')
  const none = validationError([])
  t.equal(none.message, 'invalid request')
  t.equal(none.param, null)
})
