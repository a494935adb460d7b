/**
 * What the serverless forms decide without React: the "Make serverless" form (name, CPU and memory in the
 * deploy form's units, input and output folders in the user's own bucket), the batch form's output, where a
 * service's folders are in the user's storage, and how its results read.
 */
import { Catalog, Deployments, Serverless } from './api';
import { formatMemory } from './marketplaceState';

/** A service's name, as the engine takes it (OSCAR's rule). */
const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const NAME_MAX = 39;
/** A folder inside the bucket: names of letters, digits, '.', '_' and '-', separated by single '/'. */
const FOLDER = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const QUANTITY = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;
const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40
};

/** The form as typed: numbers stay text until checked, so half-typed values are not rewritten. */
export interface IServiceForm {
  name: string;
  cpu: string;
  /** in GB (1000 MB), as the deploy form */
  memoryGB: string;
  /** folders inside the user's bucket; '' for none */
  input: string;
  output: string;
  /** folders typed by the user no longer follow the name */
  inputTyped: boolean;
  outputTyped: boolean;
}

export type ServiceField = 'name' | 'cpu' | 'memoryGB' | 'input' | 'output';

export interface IServiceChecked {
  errors: Partial<Record<ServiceField, string>>;
  warnings: string[];
}

function text(value: number): string {
  return String(Number(value.toFixed(3)));
}

/** The default name of a module's service (as the server makes it: lowercase, '-' between words, 39 at most). */
export function serviceName(module: string): string {
  return module
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, NAME_MAX)
    .replace(/-+$/, '');
}

export function defaultFolders(name: string): Pick<IServiceForm, 'input' | 'output'> {
  return { input: `${name}/in`, output: `${name}/out` };
}

/** A fresh form: the module's name, what it needs (1 CPU and 2 GB when it says nothing), folders after the name. */
export function initialServiceForm(module: string, needs?: Partial<Catalog.INeeds> | null): IServiceForm {
  const name = serviceName(module);
  return {
    name,
    cpu: text(needs?.cpu || 1),
    memoryGB: text((needs?.memory_MB || 2000) / 1000),
    ...defaultFolders(name),
    inputTyped: false,
    outputTyped: false
  };
}

/** Change one field; folders the user has not typed follow the name. */
export function editService(state: IServiceForm, field: ServiceField, value: string): IServiceForm {
  if (field === 'name') {
    const folders = defaultFolders(value.trim());
    return {
      ...state,
      name: value,
      input: state.inputTyped ? state.input : folders.input,
      output: state.outputTyped ? state.output : folders.output
    };
  }
  if (field === 'input' || field === 'output') {
    return { ...state, [field]: value, [`${field}Typed`]: true };
  }
  return { ...state, [field]: value };
}

/** A folder as typed, without the slashes around it. */
export function folder(value: string): string {
  return value.trim().replace(/^\/+|\/+$/g, '');
}

function checkFolder(value: string): string | undefined {
  const f = folder(value);
  if (!f) {
    return undefined;
  }
  if (!FOLDER.test(f) || f.split('/').some(part => part === '.' || part === '..')) {
    return "Use folder names of letters, digits, '.', '_' and '-', separated by '/', e.g. fish/in.";
  }
  return undefined;
}

function checkNumber(value: string, what: string): string | undefined {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) {
    return 'Enter a number.';
  }
  return number > 0 ? undefined : `Enter ${what} above 0.`;
}

/** What stops the form from being sent, and what is worth a warning. `bucket`: null when there is no storage. */
export function checkServiceForm(
  state: IServiceForm,
  needs?: Partial<Catalog.INeeds> | null,
  bucket?: string | null
): IServiceChecked {
  const checked: IServiceChecked = { errors: {}, warnings: [] };
  const name = state.name.trim();
  if (!name) {
    checked.errors.name = 'Give the service a name.';
  } else if (name.length > NAME_MAX || !NAME.test(name)) {
    checked.errors.name =
      `Use up to ${NAME_MAX} lowercase letters, digits and '-', starting and ending with a letter or digit.`;
  }
  const cpu = checkNumber(state.cpu, 'a CPU share');
  if (cpu) {
    checked.errors.cpu = cpu;
  }
  const memory = checkNumber(state.memoryGB, 'a memory size');
  if (memory) {
    checked.errors.memoryGB = memory;
  } else if (Number(state.memoryGB) < 0.016) {
    checked.errors.memoryGB = 'A service needs at least 0.016 GB (16 MB).';
  }
  if (bucket) {
    for (const field of ['input', 'output'] as const) {
      const error = checkFolder(state[field]);
      if (error) {
        checked.errors[field] = error;
      }
    }
    const input = folder(state.input);
    const output = folder(state.output);
    if (!checked.errors.output && input && output && (output === input || output.startsWith(`${input}/`))) {
      checked.errors.output = 'Put results outside the input folder: each result would start a job again.';
    }
    if (!input) {
      checked.warnings.push(
        'Without an input folder, uploads start no job: call it with Invoke, from code or in batches.'
      );
    }
  }
  const below = [
    needs?.cpu && Number(state.cpu) < needs.cpu && `${needs.cpu} CPU`,
    needs?.memory_MB && Number(state.memoryGB) * 1000 < needs.memory_MB && `${formatMemory(needs.memory_MB)} memory`
  ].filter((part): part is string => Boolean(part));
  if (below.length && !checked.errors.cpu && !checked.errors.memoryGB) {
    checked.warnings.push(`The module recommends ${below.join(', ')}: with less it may be slow or fail.`);
  }
  return checked;
}

/** The request to send for a checked form: folders become paths in the user's bucket. */
export function toServiceRequest(module: string, state: IServiceForm, bucket?: string | null): Serverless.IMakeRequest {
  const path = (value: string) => (bucket && folder(value) ? [`${bucket}/${folder(value)}`] : []);
  return {
    module,
    name: state.name.trim(),
    cpu: text(Number(state.cpu)),
    memory: `${Math.round(Number(state.memoryGB) * 1000)}M`,
    inputs: path(state.input),
    outputs: path(state.output)
  };
}

/** A service's memory (a Kubernetes quantity: "2000M", "2Gi") in the forms' words ("2 GB"), as given if unreadable. */
export function describeMemory(quantity: string | undefined): string {
  const match = QUANTITY.exec(quantity ?? '');
  if (!match || !(match[2] in UNITS)) {
    return quantity ?? '';
  }
  return formatMemory(Math.round((Number(match[1]) * UNITS[match[2]]) / 1e6));
}

/** A service's first input or output path ('bucket/folder'), or null. */
export function firstPath(service: Serverless.IService, which: 'input' | 'output'): string | null {
  return (service[which] ?? []).map(io => io.path?.replace(/^\/+|\/+$/g, '')).find(Boolean) ?? null;
}

/** Where 'bucket/some/key' is in the user's platform storage (`bucket`): the path inside it, or null if elsewhere. */
export function pathInBucket(path: string, bucket: string | null | undefined): string | null {
  const clean = path.replace(/^\/+|\/+$/g, '');
  return bucket && clean.startsWith(`${bucket}/`) ? clean.slice(bucket.length + 1) : null;
}

/** The batch form: the output follows the chosen service's own until typed. */
export interface IBatchForm {
  service: string;
  inputs: string;
  output: string;
  outputTyped: boolean;
}

export function initialBatchForm(services: Serverless.IService[]): IBatchForm {
  const first = services[0];
  const output = first ? (firstPath(first, 'output') ?? '') : '';
  return { service: first?.name ?? '', inputs: '', output, outputTyped: false };
}

export function chooseBatchService(state: IBatchForm, service: Serverless.IService): IBatchForm {
  return {
    ...state,
    service: service.name,
    output: state.outputTyped ? state.output : firstPath(service, 'output') ?? ''
  };
}

/** What is missing for a batch, or null: a service, the files, and where results go. */
export function checkBatch(state: IBatchForm): string | null {
  if (!state.service) {
    return 'Choose a service.';
  }
  if (!folder(state.inputs)) {
    return 'Give the bucket/folder of the files to process, e.g. ana/survey-2024.';
  }
  if (!folder(state.output)) {
    return `Give a bucket/folder for the results: ${state.service} has no output folder of its own.`;
  }
  if (folder(state.output) === folder(state.inputs)) {
    return 'Put the results in another folder than the files to process.';
  }
  return null;
}

export function toBatchRequest(state: IBatchForm): Serverless.IBatchRequest {
  return { service: state.service, inputs: folder(state.inputs), output: folder(state.output) };
}

/** What a job is about: the user's own file when the engine knows it, else the job's name. */
export function jobTitle(job: Serverless.IJob): string {
  return job.file || job.name;
}

function isPrediction(value: unknown): value is Deployments.IPrediction {
  const record = value && typeof value === 'object' ? (value as Record<string, unknown>) : null;
  return (
    !!record &&
    typeof record.width === 'number' &&
    typeof record.height === 'number' &&
    (Array.isArray(record.detections) || Array.isArray(record.classes))
  );
}

/**
 * A module's answer as the Try view shows it: the prediction itself (serverless workers save what predict
 * returned), or DEEPaaS's `{predictions: ...}` around it; null when it is something else.
 */
export function asPrediction(value: unknown): Deployments.IPrediction | null {
  const inner = value && typeof value === 'object' ? (value as { predictions?: unknown }).predictions : undefined;
  for (const candidate of [value, inner]) {
    const first = Array.isArray(candidate) ? candidate[0] : candidate;
    if (isPrediction(first)) {
      return first;
    }
  }
  return null;
}

/** Whether a file name is an image a browser shows (the preview draws on it). */
export function isImageName(name: string): boolean {
  return /\.(jpe?g|png|gif|bmp|webp)$/i.test(name);
}
