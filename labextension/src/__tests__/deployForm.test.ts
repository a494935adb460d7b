import { describe, expect, it } from 'vitest';

import { Catalog } from '../api';
import { checkEnv, checkForm, chooseProfile, clip, IDeployForm, initialForm, toRequest } from '../deployForm';

function profile(slug: string, extra: Partial<Catalog.IFormProfile> = {}): Catalog.IFormProfile {
  return {
    slug,
    display_name: `${slug} profile`,
    default: false,
    fits: true,
    reason: null,
    limits: { cpu: 2, memory_MB: 4000, gpu: 0 },
    prefill: { cpu: 1, memory_MB: 2000, gpu: 0 },
    gpu_model: null,
    image: 'img',
    ...extra
  };
}

const GPU = profile('gpu', {
  limits: { cpu: 4, memory_MB: 16000, gpu: 1 },
  prefill: { cpu: 2, memory_MB: 8000, gpu: 1 },
  gpu_model: 'Tesla T4'
});
const TINY = profile('tiny', {
  fits: false,
  reason: 'needs 2 GB memory (has 1 GB)',
  limits: { cpu: 1, memory_MB: 1000, gpu: 0 },
  prefill: { cpu: 1, memory_MB: 1000, gpu: 0 }
});

function form(profiles: Catalog.IFormProfile[], extra: Partial<Catalog.IForm> = {}): Catalog.IForm {
  return {
    module: 'fish-detector',
    title: 'Fish detector',
    deployable: true,
    needs: { cpu: 1, gpu: 0, memory_MB: 2000, gpu_memory_MB: 0 },
    profiles,
    default: profiles.find(p => p.fits)?.slug ?? null,
    reason: null,
    ...extra
  };
}

const SMALL = profile('small');

describe('initialForm', () => {
  it("starts from the default profile's pre-fill, memory in GB", () => {
    expect(initialForm(form([TINY, SMALL, GPU], { default: 'gpu' }))).toEqual({
      profile: 'gpu',
      cpu: '2',
      memoryGB: '8',
      gpu: '1',
      title: '',
      env: []
    });
  });

  it('takes the first profile that fits when the default does not', () => {
    expect(initialForm(form([TINY, SMALL], { default: 'tiny' })).profile).toBe('small');
  });

  it('takes the default when nothing meets the recommendation, and only warns', () => {
    const none = form([TINY], { default: 'tiny', reason: 'Fish detector recommends 2 GB of memory ...' });
    const state = initialForm(none);
    expect(state).toMatchObject({ profile: 'tiny', memoryGB: '1' });
    expect(checkForm(state, none)).toEqual({
      errors: {},
      warnings: ['The module recommends 2 GB memory: with less it may be slow or fail.']
    });
  });

  it('chooses nothing when the user may use no hardware, and says so', () => {
    const none = form([], { default: null });
    const state = initialForm(none);
    expect(state.profile).toBeNull();
    expect(checkForm(state, none).errors.profile).toContain('You may not use any hardware profile');
  });

  it("never pre-fills more than the profile's limits", () => {
    const odd = profile('odd', { prefill: { cpu: 3, memory_MB: 9000, gpu: 2 } });
    expect(initialForm(form([odd]))).toMatchObject({ cpu: '2', memoryGB: '4', gpu: '0' });
  });
});

describe('chooseProfile and clip', () => {
  it('replaces the hardware with the new profile’s pre-fill and keeps the rest', () => {
    const start: IDeployForm = { ...initialForm(form([SMALL, GPU])), title: 'Station 4', cpu: '2' };
    expect(chooseProfile(start, GPU)).toMatchObject({
      profile: 'gpu',
      cpu: '2',
      memoryGB: '8',
      gpu: '1',
      title: 'Station 4'
    });
  });

  it('lowers values above the maximum and leaves the rest to the check', () => {
    expect(clip('6', 'cpu', SMALL)).toBe('2');
    expect(clip('1.5', 'cpu', SMALL)).toBe('1.5');
    expect(clip('12', 'memoryGB', SMALL)).toBe('4');
    expect(clip('3', 'gpu', GPU)).toBe('1');
    expect(clip('0.5', 'gpu', GPU)).toBe('0');
    expect(clip('', 'cpu', SMALL)).toBe('');
    expect(clip('two', 'cpu', SMALL)).toBe('two');
  });
});

describe('checkForm', () => {
  const f = form([SMALL, GPU]);
  const state = (change: Partial<IDeployForm>): IDeployForm => ({ ...initialForm(f), ...change });

  it('accepts the pre-filled form', () => {
    expect(checkForm(state({}), f)).toEqual({ errors: {}, warnings: [] });
  });

  it('says what is wrong with each number', () => {
    const { errors } = checkForm(state({ cpu: '3', memoryGB: '', gpu: '1' }), f);
    expect(errors).toEqual({
      cpu: 'At most 2 CPU in small profile.',
      memoryGB: 'Enter a number.',
      gpu: 'At most 0 GPU in small profile.'
    });
    expect(checkForm(state({ cpu: '0', memoryGB: '-1' }), f).errors).toMatchObject({
      cpu: 'Enter a number above 0.',
      memoryGB: 'Enter a number above 0.'
    });
    expect(checkForm(state({ profile: 'gpu', gpu: '0.5' }), f).errors.gpu).toBe(
      'Enter a whole number of GPUs (0 for none).'
    );
    expect(checkForm(state({ memoryGB: '4.5' }), f).errors.memoryGB).toBe('At most 4 GB in small profile.');
  });

  it('warns when the hardware is below what the module needs, without blocking', () => {
    expect(checkForm(state({ cpu: '0.5', memoryGB: '1' }), f)).toEqual({
      errors: {},
      warnings: ['The module recommends 1 CPU, 2 GB memory: with less it may be slow or fail.']
    });
  });

  it('lets a profile below the recommendation be chosen, with a warning', () => {
    const g = form([SMALL, TINY]);
    const checked = checkForm(chooseProfile(initialForm(g), TINY), g);
    expect(checked.errors).toEqual({});
    expect(checked.warnings).toEqual(['The module recommends 2 GB memory: with less it may be slow or fail.']);
  });
});

const NOT_A_NAME = "is not a variable name: use letters, digits and '_', not starting with a digit.";

describe('environment variables', () => {
  it.each([
    [[{ name: 'SITE', value: 'reef' }, { name: '', value: '' }], undefined],
    [[{ name: '1SITE', value: 'x' }], `'1SITE' ${NOT_A_NAME}`],
    [[{ name: 'MY-VAR', value: 'x' }], `'MY-VAR' ${NOT_A_NAME}`],
    [[{ name: '', value: 'orphan' }], 'Give each value a variable name.'],
    [[{ name: 'A', value: '1' }, { name: ' A ', value: '2' }], 'A is set twice.']
  ])('%j -> %s', (rows, error) => {
    expect(checkEnv(rows)).toBe(error);
  });
});

describe('toRequest', () => {
  it('sends the profile, the hardware in the API’s units, a title and variables when given', () => {
    const state: IDeployForm = {
      profile: 'small',
      cpu: '1.5',
      memoryGB: '2.5',
      gpu: '0',
      title: '  Station 4 ',
      env: [
        { name: ' SITE ', value: 'reef 4' },
        { name: '', value: '' }
      ]
    };
    expect(toRequest('fish-detector', 'try', state)).toEqual({
      module: 'fish-detector',
      kind: 'try',
      profile: 'small',
      hardware: { cpu: 1.5, memory_MB: 2500, gpu: 0 },
      title: 'Station 4',
      env: { SITE: 'reef 4' }
    });
    const plain = toRequest('fish-detector', 'deployment', { ...state, title: ' ', env: [] });
    expect(plain).not.toHaveProperty('title');
    expect(plain).not.toHaveProperty('env');
  });
});
