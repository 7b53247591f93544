/**
 * deploy/k8s/ as data, for the tests that check it without a cluster: every manifest parsed, each validated
 * against the Kubernetes API schema by the kubernetes-models classes (generated from the Kubernetes OpenAPI
 * spec: types, required fields, enums, formats such as int32), and the Job's pod as a command and environment.
 */
import { readdirSync, readFileSync } from 'node:fs';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Service } from 'kubernetes-models/v1/Service';
import { Job } from 'kubernetes-models/batch/v1/Job';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { ROOT } from './compose.js';

export const K8S = `${ROOT}deploy/k8s/`;

/** A manifest as read: its file, and the object. */
export interface Manifest {
  file: string;
  doc: { apiVersion?: string; kind?: string; metadata?: { name?: string } } & Record<string, unknown>;
}

/** Every document of every .yaml file under deploy/k8s/, in file order. */
export function readManifests(): Manifest[] {
  return readdirSync(K8S)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((file) =>
      parseAllDocuments(readFileSync(`${K8S}${file}`, 'utf8'))
        .map((d) => d.toJS() as Manifest['doc'] | null)
        .filter((doc): doc is Manifest['doc'] => doc !== null)
        .map((doc) => ({ file, doc })),
    );
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Service': Service,
  'batch/v1/Job': Job,
};

/** The kubernetes-models module and interface of each kind, for {@link unknownFields}. */
const TYPES: Record<string, [module: string, type: string]> = {
  'v1/ConfigMap': ['kubernetes-models/v1/ConfigMap', 'IConfigMap'],
  'v1/PersistentVolumeClaim': ['kubernetes-models/v1/PersistentVolumeClaim', 'IPersistentVolumeClaim'],
  'v1/Service': ['kubernetes-models/v1/Service', 'IService'],
  'batch/v1/Job': ['kubernetes-models/batch/v1/Job', 'IJob'],
};

/**
 * Fields the API does not have (a misspelt `completionz`, a field at the wrong level), which the validator
 * above lets through as its schemas allow extra properties (the API server drops them, or refuses them with
 * `kubectl apply --validate=strict`). Each manifest is type-checked as an object literal of its kind's
 * interface, generated from the same OpenAPI spec: TypeScript's excess-property check names the first unknown
 * field of each manifest.
 */
export function unknownFields(manifests: readonly Manifest[]): string[] {
  const name = `${ROOT}test/__k8s_manifests__.ts`;
  const lines = manifests.map((m, i) => {
    const [module, type] = TYPES[`${m.doc.apiVersion}/${m.doc.kind}`] ?? ['', 'never'];
    return `import type { ${type} as T${i} } from '${module}';\nexport const m${i}: T${i} = ${JSON.stringify(m.doc)};`;
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const read = host.getSourceFile.bind(host);
  host.getSourceFile = (file, language, ...rest) => (file === name ? ts.createSourceFile(file, source, language) : read(file, language, ...rest));
  const program = ts.createProgram([name], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const m = manifests[Math.floor(line / 2)];
    return `${m ? `${m.file} (${m.doc.kind})` : 'manifests'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

/** The schema errors of one manifest (empty when valid), or an error naming a kind these tests do not know. */
export function validateManifest(doc: Manifest['doc']): string[] {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) return [`no schema here for apiVersion ${doc.apiVersion} kind ${doc.kind}`];
  try {
    new Model(doc as never).validate();
    return [];
  } catch (e) {
    return [(e as Error).message];
  }
}

/** The one manifest of a kind. */
export function only<T>(manifests: Manifest[], kind: string): T {
  const found = manifests.filter((m) => m.doc.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} under deploy/k8s/, found ${found.length}`);
  return found[0].doc as T;
}

export type { IConfigMap, IJob, IPersistentVolumeClaim, IService };

/** The annotation an Indexed Job's pod carries its completion index in. */
export const COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']";

/**
 * The environment of the Job's container in the pod of completion index `index`, as the kubelet gives it: plain
 * values, and the completion index where the downward API asks for it (the only fieldRef these manifests use).
 */
export function podEnv(job: IJob, index: number): Record<string, string> {
  const container = job.spec!.template.spec!.containers[0];
  return Object.fromEntries(
    (container.env ?? []).map((e) => {
      if (e.value !== undefined) return [e.name, e.value];
      if (e.valueFrom?.fieldRef?.fieldPath === COMPLETION_INDEX) return [e.name, String(index)];
      throw new Error(`env ${e.name}: only plain values and the completion index are mapped here`);
    }),
  );
}
