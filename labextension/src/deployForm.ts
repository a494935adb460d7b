/** What the deploy form decides without React: pre-filling, clipping to a profile, checking, the request. */
import { Catalog, Deployments } from './api';
import { formatMemory } from './marketplaceState';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface IEnvRow {
  name: string;
  value: string;
}

/** The form as typed: numbers stay text until checked, so half-typed values are not rewritten. */
export interface IDeployForm {
  profile: string | null;
  cpu: string;
  /** in GB, as people think of memory */
  memoryGB: string;
  gpu: string;
  title: string;
  env: IEnvRow[];
}

export type HardwareField = 'cpu' | 'memoryGB' | 'gpu';

export interface IChecked {
  /** what must be fixed before sending, by field ('env' for the environment rows) */
  errors: Partial<Record<HardwareField | 'profile' | 'title' | 'env', string>>;
  /** what is allowed but worth knowing */
  warnings: string[];
}

function text(value: number): string {
  return String(Number(value.toFixed(3)));
}

/** The hardware fields of a profile's pre-fill (what the module needs, within the profile). */
export function prefill(profile: Catalog.IFormProfile): Pick<IDeployForm, HardwareField> {
  return {
    cpu: text(Math.min(profile.prefill.cpu, profile.limits.cpu)),
    memoryGB: text(Math.min(profile.prefill.memory_MB, profile.limits.memory_MB) / 1000),
    gpu: text(Math.min(profile.prefill.gpu, profile.limits.gpu))
  };
}

/**
 * A fresh form: the default profile when it fits, else the first that fits, else the default all the same
 * (what a module recommends is not a minimum: below it, the form warns).
 */
export function initialForm(form: Catalog.IForm): IDeployForm {
  const fitting = form.profiles.filter(p => p.fits);
  const isDefault = (p: Catalog.IFormProfile) => p.slug === form.default;
  const chosen =
    fitting.find(isDefault) ?? fitting[0] ?? form.profiles.find(isDefault) ?? form.profiles[0] ?? null;
  const hardware = chosen ? prefill(chosen) : { cpu: '', memoryGB: '', gpu: '0' };
  return { profile: chosen?.slug ?? null, ...hardware, title: '', env: [] };
}

/** Switch profile: its pre-fill replaces the hardware typed for the previous one. */
export function chooseProfile(state: IDeployForm, profile: Catalog.IFormProfile): IDeployForm {
  return { ...state, profile: profile.slug, ...prefill(profile) };
}

/** The most a field may hold in a profile, in the field's unit. */
export function fieldLimit(profile: Catalog.IFormProfile, field: HardwareField): number {
  return field === 'memoryGB' ? profile.limits.memory_MB / 1000 : profile.limits[field];
}

/**
 * A typed value brought within the profile: above its maximum becomes the maximum (GPUs whole).
 * Returns the value unchanged when it is not a number: the check says what is wrong then.
 */
export function clip(value: string, field: HardwareField, profile: Catalog.IFormProfile): string {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) {
    return value;
  }
  const limited = Math.min(number, fieldLimit(profile, field));
  return text(field === 'gpu' ? Math.max(0, Math.floor(limited)) : limited);
}

const FIELD_WORDS: Record<HardwareField, (n: number) => string> = {
  cpu: n => `${text(n)} CPU`,
  memoryGB: n => formatMemory(Math.round(n * 1000)),
  gpu: n => `${n} GPU`
};

function checkNumber(
  value: string,
  field: HardwareField,
  profile: Catalog.IFormProfile
): string | undefined {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) {
    return 'Enter a number.';
  }
  if (field === 'gpu' ? number < 0 || !Number.isInteger(number) : number <= 0) {
    return field === 'gpu' ? 'Enter a whole number of GPUs (0 for none).' : 'Enter a number above 0.';
  }
  const limit = fieldLimit(profile, field);
  if (number > limit) {
    return `At most ${FIELD_WORDS[field](limit)} in ${profile.display_name}.`;
  }
  return undefined;
}

/** What stops the form from being sent, and what is worth a warning (less than the module recommends). */
export function checkForm(state: IDeployForm, form: Catalog.IForm): IChecked {
  const checked: IChecked = { errors: {}, warnings: [] };
  const profile = form.profiles.find(p => p.slug === state.profile);
  if (!profile) {
    checked.errors.profile = form.profiles.length
      ? 'Choose the hardware to run it on.'
      : 'You may not use any hardware profile: ask your administrator to add you to a group that has one.';
    return checked;
  }
  for (const field of ['cpu', 'memoryGB', 'gpu'] as const) {
    const error = checkNumber(state[field], field, profile);
    if (error) {
      checked.errors[field] = error;
    }
  }
  if (state.title.length > 120) {
    checked.errors.title = 'Keep the title under 120 characters.';
  }
  const envError = checkEnv(state.env);
  if (envError) {
    checked.errors.env = envError;
  }
  const needs = form.needs;
  const below = [
    Number(state.cpu) < needs.cpu && FIELD_WORDS.cpu(needs.cpu),
    Number(state.memoryGB) * 1000 < needs.memory_MB && `${formatMemory(needs.memory_MB)} memory`,
    Number(state.gpu) < needs.gpu && FIELD_WORDS.gpu(needs.gpu)
  ].filter((part): part is string => Boolean(part));
  if (below.length && !Object.keys(checked.errors).length) {
    checked.warnings.push(`The module recommends ${below.join(', ')}: with less it may be slow or fail.`);
  }
  return checked;
}

/** Environment rows: each named like a shell variable, no name twice; empty rows are ignored. */
export function checkEnv(rows: IEnvRow[]): string | undefined {
  const seen = new Set<string>();
  for (const row of rows) {
    const name = row.name.trim();
    if (!name && !row.value) {
      continue;
    }
    if (!ENV_NAME.test(name)) {
      return name
        ? `'${name}' is not a variable name: use letters, digits and '_', not starting with a digit.`
        : 'Give each value a variable name.';
    }
    if (seen.has(name)) {
      return `${name} is set twice.`;
    }
    seen.add(name);
  }
  return undefined;
}

/** The request to send for a checked form. */
export function toRequest(module: string, kind: Deployments.Kind, state: IDeployForm): Deployments.IRequest {
  const request: Deployments.IRequest = {
    module,
    kind,
    profile: state.profile ?? undefined,
    hardware: {
      cpu: Number(state.cpu),
      memory_MB: Math.round(Number(state.memoryGB) * 1000),
      gpu: Number(state.gpu)
    }
  };
  const title = state.title.trim();
  if (title) {
    request.title = title;
  }
  const env = state.env.filter(row => row.name.trim() || row.value);
  if (env.length) {
    request.env = Object.fromEntries(env.map(row => [row.name.trim(), row.value]));
  }
  return request;
}
