import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { Catalog, ReefLabError } from '../api';
import { DeployDialog } from '../deployDialog';
import { ModuleDetail } from '../moduleDetail';
import { card, FakeAPI } from './fakeApi';
import { button, click, field, IRendered, leave, render, select, settle, typeInto } from './render';

const FISH: Catalog.IModule = {
  ...card('fish-detector', 'Fish detector'),
  metadata: { title: 'Fish detector' },
  problems: [],
  entry_point: 'fish-detector',
  versions: []
};

function profile(slug: string, name: string, extra: Partial<Catalog.IFormProfile> = {}): Catalog.IFormProfile {
  return {
    slug,
    display_name: name,
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

const FORM: Catalog.IForm = {
  module: 'fish-detector',
  title: 'Fish detector',
  deployable: true,
  needs: { cpu: 1, gpu: 0, memory_MB: 2000, gpu_memory_MB: 0 },
  profiles: [
    profile('tiny', 'Tiny · 1 CPU · 1 GB', {
      fits: false,
      reason: 'below its recommendation of 2 GB memory (has 1 GB)',
      limits: { cpu: 1, memory_MB: 1000, gpu: 0 },
      prefill: { cpu: 1, memory_MB: 1000, gpu: 0 }
    }),
    profile('cpu-small', 'Small · 2 CPU · 4 GB', { default: true }),
    profile('gpu-t4', 'GPU · 1× Tesla T4', {
      limits: { cpu: 4, memory_MB: 16000, gpu: 1 },
      prefill: { cpu: 1, memory_MB: 2000, gpu: 0 },
      gpu_model: 'Tesla T4'
    })
  ],
  default: 'cpu-small',
  reason: null
};

let view: IRendered | null = null;

afterEach(() => {
  view?.unmount();
  view = null;
});

function apiWithFish(form: Catalog.IForm = FORM): FakeAPI {
  const api = new FakeAPI();
  api.modules.set('fish-detector', FISH);
  api.forms.set('fish-detector', form);
  return api;
}

async function dialog(kind: 'deployment' | 'try', api = apiWithFish(), form = FORM) {
  const onCreated = vi.fn();
  const onCancel = vi.fn();
  view = await render(<DeployDialog form={form} kind={kind} api={api} onCreated={onCreated} onCancel={onCancel} />);
  return { host: view.host, api, onCreated, onCancel };
}

describe('DeployDialog', () => {
  it('pre-fills the default profile and shows which profiles fit and why not', async () => {
    const { host } = await dialog('deployment');
    const hardware = field<HTMLSelectElement>(host, 'Hardware');
    expect(hardware.value).toBe('cpu-small');
    expect(document.activeElement).toBe(hardware);
    expect([...hardware.options].map(o => [o.value, o.textContent, o.disabled])).toEqual([
      ['tiny', 'Tiny · 1 CPU · 1 GB — below its recommendation of 2 GB memory (has 1 GB)', false],
      ['cpu-small', 'Small · 2 CPU · 4 GB', false],
      ['gpu-t4', 'GPU · 1× Tesla T4', false]
    ]);
    expect(field(host, 'CPU').value).toBe('1');
    expect(field(host, 'CPU').max).toBe('2');
    expect(field(host, 'Memory (GB)').value).toBe('2');
    expect(field(host, 'GPU').disabled).toBe(true);
    expect(host.textContent).toContain('At most 2 CPU · 4 GB; pre-filled with what the module recommends.');
  });

  it('clips what is typed to the chosen profile, and a new profile brings its own limits', async () => {
    const { host } = await dialog('deployment');
    const cpu = field(host, 'CPU');
    await typeInto(cpu, '8');
    expect(host.querySelector('.jp-ReefLab-fieldError')?.textContent).toBe('At most 2 CPU in Small · 2 CPU · 4 GB.');
    await leave(cpu);
    expect(cpu.value).toBe('2');
    const note = host.querySelector('[role="status"]');
    expect(note?.textContent).toBe('Lowered to the most Small · 2 CPU · 4 GB allows.');
    expect(host.querySelector('.jp-ReefLab-fieldError')).toBeNull();

    await select(field<HTMLSelectElement>(host, 'Hardware'), 'gpu-t4');
    expect(field(host, 'GPU').disabled).toBe(false);
    expect(field(host, 'CPU').value).toBe('1');
    await typeInto(field(host, 'GPU'), '2');
    await leave(field(host, 'GPU'));
    expect(field(host, 'GPU').value).toBe('1');
  });

  it('sends the form as typed, and hands over the new deployment', async () => {
    const { host, api, onCreated } = await dialog('deployment');
    await typeInto(field(host, 'Memory (GB)'), '3.5');
    await typeInto(field(host, 'Title (optional)'), 'Station 4');
    await click(button(host, 'Add a variable'));
    await typeInto(field(host, 'Name of variable 1'), 'SITE');
    await typeInto(field(host, 'Value of variable 1'), 'secret-site');
    await click(button(host, 'Deploy'));
    await settle();
    expect(api.createDeployment).toHaveBeenCalledWith({
      module: 'fish-detector',
      kind: 'deployment',
      profile: 'cpu-small',
      hardware: { cpu: 1, memory_MB: 3500, gpu: 0 },
      title: 'Station 4',
      env: { SITE: 'secret-site' }
    });
    expect(onCreated).toHaveBeenCalledWith(expect.objectContaining({ id: 'feedbeef', env: ['SITE'] }));
  });

  it("shows the server's reason and keeps what was typed", async () => {
    const api = apiWithFish();
    api.refuseNext = new ReefLabError('You may have 2 tries at once; delete one or wait for it to end.', 403);
    const { host, onCreated } = await dialog('try', api);
    await typeInto(field(host, 'Title (optional)'), 'Station 4');
    await click(button(host, 'Try'));
    await settle();
    expect(host.querySelector('[role="alert"]')?.textContent).toBe(
      'You may have 2 tries at once; delete one or wait for it to end.'
    );
    expect(field(host, 'Title (optional)').value).toBe('Station 4');
    expect(button(host, 'Try')!.disabled).toBe(false);
    expect(onCreated).not.toHaveBeenCalled();
  });

  it('does not send a form with mistakes, and says what to fix', async () => {
    const { host, api } = await dialog('deployment');
    await typeInto(field(host, 'CPU'), '');
    await click(button(host, 'Add a variable'));
    await typeInto(field(host, 'Name of variable 1'), '2FAST');
    await click(button(host, 'Deploy'));
    await settle();
    expect(api.createDeployment).not.toHaveBeenCalled();
    const errors = [...host.querySelectorAll('.jp-ReefLab-fieldError')].map(e => e.textContent);
    expect(errors).toEqual([
      'Enter a number.',
      "'2FAST' is not a variable name: use letters, digits and '_', not starting with a digit."
    ]);
    expect(field(host, 'CPU').getAttribute('aria-invalid')).toBe('true');
  });

  it('says a try stops by itself, and tries', async () => {
    const { host, api } = await dialog('try');
    expect(host.querySelector('h4')?.textContent).toBe('Try Fish detector');
    expect(host.textContent).toContain('A try stops by itself after 10 minutes.');
    await click(button(host, 'Try'));
    await settle();
    expect(api.createDeployment).toHaveBeenCalledWith(expect.objectContaining({ kind: 'try' }));
  });

  it('says when no hardware meets the recommendation, and deploys on less with a warning', async () => {
    const none: Catalog.IForm = {
      ...FORM,
      profiles: [FORM.profiles[0]],
      default: 'tiny',
      reason: 'Fish detector recommends 2 GB of memory, more than any hardware you may use; it can still be deployed.'
    };
    const { host, api } = await dialog('deployment', apiWithFish(none), none);
    expect(host.querySelector('.jp-ReefLab-warning')?.textContent).toBe(none.reason);
    expect(field<HTMLSelectElement>(host, 'Hardware').value).toBe('tiny');
    expect(host.textContent).toContain('The module recommends 2 GB memory: with less it may be slow or fail.');
    await click(button(host, 'Deploy'));
    await settle();
    expect(api.createDeployment).toHaveBeenCalledWith(
      expect.objectContaining({ profile: 'tiny', hardware: { cpu: 1, memory_MB: 1000, gpu: 0 } })
    );
  });

  it('cannot be sent when the user may use no hardware', async () => {
    const none: Catalog.IForm = { ...FORM, profiles: [], default: null, reason: null };
    const { host } = await dialog('deployment', apiWithFish(none), none);
    expect(field<HTMLSelectElement>(host, 'Hardware').value).toBe('');
    expect(button(host, 'Deploy')!.disabled).toBe(true);
    expect(field(host, 'CPU').disabled).toBe(true);
  });
});

describe('Deploying from the module detail', () => {
  it('opens the form, and after sending says where to follow the deployment', async () => {
    const api = apiWithFish();
    const onDeployed = vi.fn();
    view = await render(<ModuleDetail id="fish-detector" api={api} onBack={vi.fn()} onDeployed={onDeployed} />);
    await settle();
    const host = view.host;
    await click(button(host, 'Deploy'));
    const form = host.querySelector('form')!;
    expect(form.getAttribute('aria-labelledby')).toBeTruthy();
    expect(form.querySelector('h4')?.textContent).toBe('Deploy Fish detector');
    // cancelling brings the buttons back
    await click(button(form, 'Cancel'));
    expect(host.querySelector('form')).toBeNull();
    await click(button(host, 'Deploy'));
    await click(button(host.querySelector('form')!, 'Deploy'));
    await settle();
    expect(onDeployed).toHaveBeenCalledWith(expect.objectContaining({ id: 'feedbeef' }));
    expect(host.querySelector('form')).toBeNull();
    expect(host.querySelector('.jp-ReefLab-info[role="status"]')?.textContent).toBe(
      'Your deployment of Fish detector is starting: follow it under Deployments.'
    );
  });
});
