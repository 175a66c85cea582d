// Renders every kustomize overlay with `kubectl kustomize`, validates each object offline against
// the Kubernetes OpenAPI schemas (kubernetes-models) and the Prometheus Operator CRD schemas, then
// checks what the schemas cannot: that the pieces point at each other and at the real service
// (selectors, ports, probes, config keys, grace periods, the HPA's custom metric).
import t from 'tap'
import { execFileSync } from 'node:child_process'
import ts from 'typescript'
import YAML from 'yaml'
import { Service, ConfigMap, PersistentVolumeClaim } from 'kubernetes-models/v1'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { ServiceMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'
import { loadConfig } from '../../src/config.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import { configEnvKeys, exportedSeries, metricRefs, parseDockerfile, readRepo, repoPath } from './helpers.ts'

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> }

// The same kinds as TypeScript types: the JSON schemas above do not reject unknown fields (a misspelt key is
// silently ignored by the API server too), TypeScript's excess-property check on an object literal does.
const TYPES: Record<string, [string, string]> = {
  'v1/Service': ['kubernetes-models/v1/Service', 'IService'],
  'v1/ConfigMap': ['kubernetes-models/v1/ConfigMap', 'IConfigMap'],
  'v1/PersistentVolumeClaim': ['kubernetes-models/v1/PersistentVolumeClaim', 'IPersistentVolumeClaim'],
  'apps/v1/Deployment': ['kubernetes-models/apps/v1/Deployment', 'IDeployment'],
  'autoscaling/v2/HorizontalPodAutoscaler': ['kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', 'IHorizontalPodAutoscaler'],
  'policy/v1/PodDisruptionBudget': ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
  'networking.k8s.io/v1/NetworkPolicy': ['kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'],
  'monitoring.coreos.com/v1/ServiceMonitor': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', 'IServiceMonitor'],
  'monitoring.coreos.com/v1/PrometheusRule': ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', 'IPrometheusRule'],
}

/** Type-checks rendered objects as literals of their API types; returns the compiler's complaints. */
function unknownFields(objs: Obj[]): string[] {
  const file = repoPath('test/deploy/__rendered_objects__.ts') // virtual: never written to disk
  const src = objs
    .map((o, i) => {
      const [mod, type] = TYPES[`${o.apiVersion}/${o.kind}`] ?? []
      return mod ? `import type { ${type} as T${i} } from '${mod}'\nexport const o${i}: T${i} = ${JSON.stringify(o)}\n` : ''
    })
    .join('')
  const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, skipLibCheck: true, types: [] }
  const host = ts.createCompilerHost(options)
  const { getSourceFile, fileExists, readFile } = host
  host.getSourceFile = (f, v, ...rest) => (f === file ? ts.createSourceFile(f, src, v) : getSourceFile.call(host, f, v, ...rest))
  host.fileExists = (f) => f === file || fileExists.call(host, f)
  host.readFile = (f) => (f === file ? src : readFile.call(host, f))
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '))
}

const MODELS: Record<string, new (d: any) => { validate(): void }> = {
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
}

function render(dir: string): Obj[] {
  let out: string
  try {
    out = execFileSync('kubectl', ['kustomize', repoPath(dir)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
  } catch (e: any) {
    if (e.code === 'ENOENT') throw new Error('kubectl not found: install it (Debian/Google apt package "kubectl", kustomize >= v5 built in)')
    throw new Error(`kubectl kustomize ${dir} failed: ${e.stderr ?? e.message}`)
  }
  return YAML.parseAllDocuments(out).map((d) => d.toJS() as Obj)
}

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v)

const dockerUid = (() => {
  const user = parseDockerfile(readRepo('docker/Dockerfile')).instructions.filter((i) => i.cmd === 'USER').at(-1)!
  return Number(user.args.split(':')[0])
})()
const SERIES = exportedSeries(await createMetrics().registry.metrics())

t.test('a broken object fails schema validation (the validator is live)', async (t) => {
  t.throws(() => new Deployment({ metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { containers: [{ name: 'a', ports: [{ containerPort: 'http' as any }] }] } } } }).validate())
  t.throws(() => new PrometheusRule({ metadata: { name: 'x' }, spec: { groups: [{ name: 'g', rules: [{ expr: 'up', for: 5 as any }] }] } }).validate())
})

for (const overlay of ['cpu', 'gpu']) {
  t.test(`overlay ${overlay}`, async (t) => {
    const objs = render(`k8s/overlays/${overlay}`)
    const get = <K extends string>(kind: K) => objs.filter((o) => o.kind === kind)
    const one = (kind: string) => {
      const l = get(kind)
      t.equal(l.length, 1, `exactly one ${kind}`)
      return l[0]
    }

    t.test('every object validates against its schema', async (t) => {
      for (const o of objs) {
        const Model = MODELS[`${o.apiVersion}/${o.kind}`]
        t.ok(Model, `${o.apiVersion} ${o.kind} has a schema here`)
        if (Model) t.doesNotThrow(() => new Model(o).validate(), `${o.kind}/${o.metadata.name}`)
        t.equal(o.metadata.namespace, 'reward-server', `${o.kind} is namespaced`)
        t.equal(o.metadata.labels?.['app.kubernetes.io/name'], 'reward-server')
      }
    })

    t.test('no unknown or misplaced fields (TypeScript API types)', async (t) => {
      t.same(unknownFields(objs), [])
      // The check is live: a misspelt field is reported.
      const bad = structuredClone(objs.find((o) => o.kind === 'Deployment')!)
      bad.spec.template.spec.containers[0].readinessprobe = {}
      t.match(unknownFields([bad]).join('\n'), /readinessprobe/)
    })

    const dep = one('Deployment')
    const pod = dep.spec.template
    const server = pod.spec.containers.find((c: any) => c.name === 'server')
    const cm = get('ConfigMap').find((c) => server.envFrom.some((e: any) => e.configMapRef?.name === c.metadata.name))!

    t.test('workload wiring', async (t) => {
      t.ok(matches(dep.spec.selector.matchLabels, pod.metadata.labels), 'Deployment selector matches its pods')
      const svc = one('Service')
      t.ok(matches(svc.spec.selector, pod.metadata.labels), 'Service selects the pods')
      const portNames = server.ports.map((p: any) => p.name)
      for (const p of svc.spec.ports) t.ok(portNames.includes(p.targetPort), `Service targetPort ${p.targetPort} is a container port`)
      t.ok(matches(one('PodDisruptionBudget').spec.selector.matchLabels, pod.metadata.labels), 'PDB selects the pods')
      const np = one('NetworkPolicy')
      t.ok(matches(np.spec.podSelector.matchLabels, pod.metadata.labels), 'NetworkPolicy selects the pods')
      for (const r of np.spec.ingress) for (const p of r.ports) t.ok(portNames.includes(p.port), 'NetworkPolicy opens the HTTP port')
      const sm = one('ServiceMonitor')
      t.ok(matches(sm.spec.selector.matchLabels, svc.metadata.labels), 'ServiceMonitor selects the Service')
      t.ok(svc.spec.ports.some((p: any) => p.name === sm.spec.endpoints[0].port), 'ServiceMonitor scrapes a Service port')
      t.equal(sm.spec.endpoints[0].path, '/metrics')
      // Every image is pinned (the overlay's `images:` rewrote the base's bare names).
      for (const c of [...pod.spec.containers, ...(pod.spec.initContainers ?? [])]) t.match(c.image, /^[\w./-]+:[\w.-]+$/, `${c.name} image has a tag`)
    })

    t.test('probes, config and graceful shutdown', async (t) => {
      const port = server.ports.find((p: any) => p.name === 'http')
      for (const probe of ['startupProbe', 'livenessProbe']) t.same(server[probe].httpGet, { path: '/healthz', port: 'http' }, probe)
      t.same(server.readinessProbe.httpGet, { path: '/readyz', port: 'http' })
      const keys = configEnvKeys()
      for (const k of Object.keys(cm.data!)) t.ok(keys.has(k), `ConfigMap key ${k} is read by src/config.ts`)
      for (const e of server.env ?? []) t.ok(keys.has(e.name), `env ${e.name} is read by src/config.ts`)
      const cfg = loadConfig(cm.data!)
      t.equal(cfg.port, port.containerPort, 'PORT = containerPort')
      const preStop = server.lifecycle.preStop.exec.command
      t.equal(preStop[0], 'sleep')
      const need = Number(preStop[1]) + cfg.shutdownGraceMs / 1000
      t.ok(pod.spec.terminationGracePeriodSeconds >= need + 1, `terminationGracePeriodSeconds covers preStop + SHUTDOWN_GRACE_MS (${need} s)`)
      t.ok(pod.spec.terminationGracePeriodSeconds <= need + 10, 'and not much more (a stuck pod is killed promptly)')
      const models = server.volumeMounts.find((m: any) => m.mountPath === cfg.modelsDir)
      t.ok(models?.readOnly, 'models volume mounted read-only at MODELS_DIR')
      t.ok(pod.spec.volumes.some((v: any) => v.name === models.name))
      const cpuLimit = server.resources.limits?.cpu ?? server.resources.requests.cpu
      t.ok(cfg.threads * cfg.engineReplicas <= Number(cpuLimit), `THREADS (${cfg.threads}) x ENGINE_REPLICAS (${cfg.engineReplicas}) <= the CPU the pod gets (${cpuLimit})`)
    })

    t.test('non-root, read-only root filesystem', async (t) => {
      const psc = pod.spec.securityContext
      t.equal(psc.runAsNonRoot, true)
      t.equal(psc.runAsUser, dockerUid, 'same uid as the image USER')
      t.equal(psc.seccompProfile.type, 'RuntimeDefault')
      t.equal(pod.spec.automountServiceAccountToken, false)
      for (const c of [...pod.spec.containers, ...(pod.spec.initContainers ?? [])]) {
        t.equal(c.securityContext.readOnlyRootFilesystem, true, `${c.name}: read-only root`)
        t.equal(c.securityContext.allowPrivilegeEscalation, false)
        t.same(c.securityContext.capabilities.drop, ['ALL'])
      }
      const tmp = server.volumeMounts.find((m: any) => m.mountPath === '/tmp')
      t.ok(tmp && !tmp.readOnly, '/tmp is a writable volume')
      t.ok(pod.spec.volumes.find((v: any) => v.name === tmp.name).emptyDir)
    })

    t.test('autoscaling on the Prometheus-adapter metric', async (t) => {
      const hpa = one('HorizontalPodAutoscaler')
      t.equal(hpa.spec.scaleTargetRef.kind, 'Deployment')
      t.equal(hpa.spec.scaleTargetRef.name, dep.metadata.name)
      t.ok(hpa.spec.minReplicas >= 2, 'at least two pods, so the PDB allows a drain')
      t.equal(one('PodDisruptionBudget').spec.maxUnavailable, 1)
      const adapter = YAML.parse(readRepo('k8s/prometheus-adapter/values.yaml'))
      const served = adapter.rules.custom.map((r: any) => r.name.as)
      for (const m of hpa.spec.metrics) {
        t.equal(m.type, 'Pods')
        t.ok(served.includes(m.pods.metric.name), `${m.pods.metric.name} is served by the adapter rule`)
      }
      for (const r of adapter.rules.custom) {
        t.same(r.resources.overrides, { namespace: { resource: 'namespace' }, pod: { resource: 'pod' } })
        for (const name of metricRefs(r.seriesQuery)) t.ok(SERIES.has(name), `adapter series ${name} is exported by /metrics`)
        t.ok(new RegExp(r.name.matches).test(metricRefs(r.seriesQuery)[0]))
      }
    })

    if (overlay === 'gpu') {
      t.test('gpu: one GPU, CUDA EP first, models from a PVC', async (t) => {
        t.equal(server.resources.limits['nvidia.com/gpu'], '1')
        t.ok(pod.spec.tolerations.some((x: any) => x.key === 'nvidia.com/gpu'))
        t.same(loadConfig(cm.data!).executionProviders, ['cuda', 'cpu'])
        const vol = pod.spec.volumes.find((v: any) => v.name === 'models')
        t.notOk(vol.emptyDir, 'the emptyDir of the base is replaced')
        t.equal(one('PersistentVolumeClaim').metadata.name, vol.persistentVolumeClaim.claimName)
        t.same(pod.spec.initContainers ?? [], [], 'no copy init container')
      })
    } else {
      t.test('cpu: models copied from a versioned bundle image by an init container', async (t) => {
        t.notOk(server.resources.limits?.['nvidia.com/gpu'])
        t.same(loadConfig(cm.data!).executionProviders, ['cpu'])
        const init = pod.spec.initContainers.find((c: any) => c.name === 'models')
        t.match(init.image, /reward-models:.+/)
        const target = init.volumeMounts.find((m: any) => m.name === 'models').mountPath
        t.same(init.command, ['cp', '-R', '/models/.', `${target}/`])
        t.ok(pod.spec.volumes.find((v: any) => v.name === 'models').emptyDir)
        t.equal(get('PersistentVolumeClaim').length, 0)
      })
    }
  })
}
