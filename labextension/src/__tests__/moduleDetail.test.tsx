import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { Catalog, Pipelines } from '../api';
import { ModuleDetail } from '../moduleDetail';
import { card, FakeAPI } from './fakeApi';
import { pipelineRun } from './fakePipelines';
import { button, click, IRendered, render, settle } from './render';

const YOLO: Catalog.IModule = {
  ...card('yolo-detector', 'YOLO object detector'),
  metadata: {
    title: 'YOLO object detector',
    description: 'A **generic** detector. <img src=x onerror="alert(1)">',
    license: 'MIT',
    links: {
      source_code: 'https://github.com/reeflab/reeflab',
      documentation: 'javascript:alert(1)'
    },
    resources: {
      inference: { cpu: 1, memory_MB: 2000 },
      training: { cpu: 4, gpu: 1, memory_MB: 8000, gpu_memory_MB: 4000 }
    }
  },
  problems: [],
  entry_point: 'yolo-detector',
  versions: ['1', '2']
};

const YOLO_FORM: Catalog.IForm = {
  module: 'yolo-detector',
  title: 'YOLO object detector',
  deployable: true,
  needs: { cpu: 1, gpu: 0, memory_MB: 2000, gpu_memory_MB: 0 },
  profiles: [
    {
      slug: 'cpu-small',
      display_name: 'Small · 2 CPU · 4 GB',
      default: true,
      fits: true,
      reason: null,
      limits: { cpu: 2, memory_MB: 4000, gpu: 0 },
      prefill: { cpu: 1, memory_MB: 2000, gpu: 0 },
      gpu_model: null,
      image: 'quay.io/reeflab/singleuser:0.1.0'
    },
    {
      slug: 'tiny',
      display_name: 'Tiny · 1 CPU · 1 GB',
      default: false,
      fits: false,
      reason: 'below its recommendation of 2 GB memory (has 1 GB)',
      limits: { cpu: 1, memory_MB: 1000, gpu: 0 },
      prefill: { cpu: 1, memory_MB: 1000, gpu: 0 },
      gpu_model: null,
      image: 'quay.io/reeflab/singleuser:0.1.0'
    }
  ],
  default: 'cpu-small',
  reason: null
};

const CORAL: Catalog.IModule = {
  ...card('coral', 'Coral segmenter', { source: 'remote', valid: false, deployable: false }),
  metadata: { title: 'Coral segmenter' },
  problems: [
    { field: 'tasks', message: "'tasks' is a required property" },
    { field: 'resources.inference.gpu', message: "'one' is not of type 'integer'" }
  ],
  entry_point: null,
  versions: []
};

const CORAL_FORM: Catalog.IForm = {
  module: 'coral',
  title: 'Coral segmenter',
  deployable: false,
  needs: { cpu: 2, gpu: 1, memory_MB: 8000, gpu_memory_MB: 8000 },
  profiles: [{ ...YOLO_FORM.profiles[0], fits: false, reason: 'below its recommendation of 1 GPU (has 0)' }],
  default: null,
  reason: 'Coral segmenter needs 2 CPU, 8 GB of memory, 1 GPU for inference, more than any hardware you may use.'
};

let view: IRendered | null = null;

afterEach(() => {
  view?.unmount();
  view = null;
});

async function show(id: string, api: FakeAPI, rendermime?: IRenderMimeRegistry): Promise<HTMLElement> {
  view = await render(<ModuleDetail id={id} api={api} rendermime={rendermime} onBack={vi.fn()} />);
  await settle();
  return view.host;
}

function apiWith(...modules: Array<[Catalog.IModule, Catalog.IForm?]>): FakeAPI {
  const api = new FakeAPI();
  for (const [module, form] of modules) {
    api.modules.set(module.id, module);
    if (form) {
      api.forms.set(module.id, form);
    }
  }
  return api;
}

/** A rendermime registry that records what it was asked to render. */
function fakeRendermime() {
  const models: IRenderMime.IMimeModel[] = [];
  const registry = {
    createRenderer: (mimeType: string) => {
      expect(mimeType).toBe('text/markdown');
      const node = document.createElement('div');
      return {
        node,
        addClass: (name: string) => node.classList.add(name),
        dispose: vi.fn(),
        renderModel: async (model: IRenderMime.IMimeModel) => {
          models.push(model);
          node.className += ' jp-RenderedMarkdown';
          node.textContent = 'rendered';
        }
      };
    }
  };
  return { registry: registry as unknown as IRenderMimeRegistry, models };
}

describe('ModuleDetail', () => {
  it('shows the module, what it needs, the hardware that fits and the default', async () => {
    const host = await show('yolo-detector', apiWith([YOLO, YOLO_FORM]));
    expect(host.querySelector('h3')?.textContent).toBe('YOLO object detector');
    const hardware = host.querySelector('.jp-ReefLab-hardware')!;
    expect(hardware.textContent).toContain('Recommends for inference: 1 CPU · 2 GB memory');
    const small = hardware.querySelector('[data-profile="cpu-small"]')!;
    expect(small.querySelector('.jp-ReefLab-fit')?.textContent).toBe('fits');
    expect(small.textContent).toContain('default');
    expect(small.textContent).toContain('Pre-filled: 1 CPU · 2 GB (max 2 CPU · 4 GB)');
    const tiny = hardware.querySelector('[data-profile="tiny"]')!;
    expect(tiny.querySelector('.jp-ReefLab-fit')?.textContent).toBe('below recommendation');
    expect(tiny.textContent).toContain('Pre-filled: 1 CPU · 1 GB (max 1 CPU · 1 GB)');
    expect(tiny.textContent).toContain('below its recommendation of 2 GB memory (has 1 GB): it may be slow or fail');
    expect(tiny.textContent).not.toContain('default');
    expect(host.textContent).toContain('Needs for training: 4 CPU · 8 GB memory · 1 GPU (4 GB GPU memory)');
    expect(host.querySelector('.jp-ReefLab-warning')).toBeNull();
  });

  it('offers Try and Deploy, and Make serverless only as "coming soon"', async () => {
    const host = await show('yolo-detector', apiWith([YOLO, YOLO_FORM]));
    expect(button(host, 'Try')!.disabled).toBe(false);
    expect(button(host, 'Deploy')!.disabled).toBe(false);
    const serverless = button(host, 'Make serverless')!;
    expect(serverless.disabled).toBe(true);
    expect(serverless.title).toMatch(/^Coming soon: /);
  });

  it('offers training instead of Try for a module without trained weights', async () => {
    const untrained: Catalog.IModule = {
      ...YOLO,
      trained: false,
      retrain: { BASE_MODULE: 'yolo-detector', BASE_WEIGHTS: 'yolov8n.yaml' }
    };
    const runPipeline = vi.fn(async (_request: Pipelines.IRequest) => pipelineRun('r1', { title: 'retrain' }));
    const host = await show('yolo-detector', Object.assign(apiWith([untrained, YOLO_FORM]), { runPipeline }));
    expect(host.querySelector('.jp-ReefLab-badge-untrained')?.textContent).toBe('not trained');
    expect(host.querySelector('.jp-ReefLab-info[role="note"]')?.textContent).toContain(
      'No trained weights: train it first.'
    );
    expect(button(host, 'Try')).toBeUndefined();
    expect(button(host, 'Deploy')!.disabled).toBe(false);

    await click(button(host, 'Train…'));
    const form = host.querySelector<HTMLFormElement>('form[aria-label="Run a pipeline"]')!;
    expect(form.querySelector('input')!.value).toBe('notebooks/retrain.pipeline');
    expect(form.querySelector('textarea')!.value.split('\n').slice(0, 3)).toEqual([
      'BASE_MODULE=yolo-detector',
      'BASE_WEIGHTS=yolov8n.yaml',
      'MODEL_NAME=yolo-detector-trained'
    ]);
    await click(button(form, 'Run'));
    await settle();
    expect(runPipeline).toHaveBeenCalledWith({
      pipeline: 'notebooks/retrain.pipeline',
      parameters: { BASE_MODULE: 'yolo-detector', BASE_WEIGHTS: 'yolov8n.yaml', MODEL_NAME: 'yolo-detector-trained' }
    });
    expect(host.querySelector('.jp-ReefLab-info[role="status"]')?.textContent).toContain(
      'Training started (retrain): follow it under Jobs.'
    );
  });

  it('says so when a module without trained weights cannot be trained from here', async () => {
    const host = await show('yolo-detector', apiWith([{ ...YOLO, trained: false }, YOLO_FORM]));
    expect(host.querySelector('.jp-ReefLab-info[role="note"]')?.textContent).toBe(
      'No trained weights: train it first. Its description says how to train it.'
    );
    expect(button(host, 'Try')).toBeUndefined();
    expect(button(host, 'Train…')).toBeUndefined();
  });

  it('offers no deployment of a module that cannot run here, and says why', async () => {
    const host = await show('coral', apiWith([CORAL, CORAL_FORM]));
    for (const name of ['Try', 'Deploy']) {
      expect(button(host, name)!.disabled).toBe(true);
      expect(button(host, name)!.title).toBe('This module cannot run here (see Hardware below).');
    }
  });

  it('links only to http(s) addresses, in a new tab', async () => {
    const host = await show('yolo-detector', apiWith([YOLO, YOLO_FORM]));
    const links = [...host.querySelectorAll<HTMLAnchorElement>('.jp-ReefLab-links a')];
    expect(links.map(a => [a.textContent, a.getAttribute('href'), a.target, a.rel])).toEqual([
      ['Source code', 'https://github.com/reeflab/reeflab', '_blank', 'noopener noreferrer']
    ]);
  });

  it("renders the description with JupyterLab's markdown renderer as untrusted", async () => {
    const { registry, models } = fakeRendermime();
    const host = await show('yolo-detector', apiWith([YOLO, YOLO_FORM]), registry);
    expect(models).toHaveLength(1);
    expect(models[0].trusted).toBe(false);
    expect(models[0].data['text/markdown']).toBe(YOLO.metadata.description);
    expect(host.querySelector('.jp-ReefLab-markdown .jp-RenderedMarkdown')?.textContent).toBe('rendered');
  });

  it('without a renderer shows the description as text, never as HTML', async () => {
    const host = await show('yolo-detector', apiWith([YOLO, YOLO_FORM]));
    const text = host.querySelector('.jp-ReefLab-plainText')!;
    expect(text.textContent).toBe(YOLO.metadata.description);
    expect(text.querySelector('img')).toBeNull();
  });

  it('lists metadata problems and says why no hardware fits', async () => {
    const host = await show('coral', apiWith([CORAL, CORAL_FORM]));
    expect(host.querySelector('.jp-ReefLab-badge-invalid')?.textContent).toBe('invalid metadata');
    const problems = [...host.querySelectorAll('.jp-ReefLab-problems li')].map(li => li.textContent);
    expect(problems).toEqual([
      "tasks: 'tasks' is a required property",
      "resources › inference › gpu: 'one' is not of type 'integer'"
    ]);
    expect(host.querySelector('.jp-ReefLab-warning')?.textContent).toBe(CORAL_FORM.reason);
    expect(host.textContent).toContain('It cannot be deployed until its metadata is fixed.');
    expect(host.textContent).toContain('The authors gave no description.');
  });

  it('shows the module while its hardware check fails, and retries both', async () => {
    const api = apiWith([YOLO]);
    const host = await show('yolo-detector', api);
    expect(host.querySelector('h3')?.textContent).toBe('YOLO object detector');
    expect(host.querySelector('[role="alert"]')?.textContent).toContain(
      'The server failed to answer (HTTP 500). Try again in a moment.'
    );
    api.forms.set('yolo-detector', YOLO_FORM);
    await click(button(host, 'Try again'));
    await settle();
    expect(host.querySelector('[role="alert"]')).toBeNull();
    expect(host.querySelector('[data-profile="cpu-small"]')).not.toBeNull();
  });

  it('says when a module does not exist', async () => {
    const host = await show('nope', new FakeAPI());
    expect(host.querySelector('[role="alert"]')?.textContent).toContain(
      "No module 'nope' in the marketplace; search the catalogue for its id."
    );
  });
});
