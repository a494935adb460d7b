/** Make serverless with folders, uploads into a service's input folder, job results as Try shows them, batches. */
import * as React from 'react';
import { act } from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ReefLabError, Serverless, ServerlessAPI, Storage } from '../api';
import { ServerlessView } from '../serverless';
import { MakeServerless, ServerlessDialog } from '../serverlessDialog';
import { button, click, field, IRendered, render, settle, typeInto } from './render';

let view: IRendered | null = null;
beforeEach(() => {
  Object.assign(URL, { createObjectURL: vi.fn(() => 'blob:preview'), revokeObjectURL: vi.fn() });
  if (!Blob.prototype.arrayBuffer) {
    // jsdom's Blob lacks it (browsers have it): read it as the browser would
    Blob.prototype.arrayBuffer = function (this: Blob) {
      return new Promise<ArrayBuffer>(resolve => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result as ArrayBuffer);
        reader.readAsArrayBuffer(this);
      });
    };
  }
});
afterEach(() => {
  view?.unmount();
  view = null;
});

const PLATFORM = {
  name: 'reeflab',
  kind: 's3',
  created: '2026-11-23T10:00:00+00:00',
  platform: true,
  location: 'http://127.0.0.1:8333/ana',
  description: 'your bucket ana on the platform',
  bucket_path: 'ana',
  bucket: 'ana',
  prefix: '',
  mount: { state: 'unmounted', path: 'storage/reeflab', reason: null }
} as Storage.IConnection;

const PREDICTION = {
  file: 'reef.jpg',
  width: 640,
  height: 480,
  time_ms: 30,
  detections: [
    { class_id: 0, label: 'fish', confidence: 0.91, box: [10, 20, 110, 90] },
    { class_id: 0, label: 'fish', confidence: 0.72, box: [300, 200, 380, 260] }
  ]
};

function job(name: string, extra: Partial<Serverless.IJob> = {}): Serverless.IJob {
  const times = { creation_time: '2026-11-23T10:00:00', start_time: null, finish_time: null };
  return { name, status: 'Succeeded', ...times, ...extra };
}

const FISH: Serverless.IService = {
  name: 'fish',
  cpu: '1',
  memory: '2000M',
  environment: { variables: { REEFLAB_MODULE: 'fish-detector' } },
  input: [{ storage_provider: 'minio.default', path: 'ana/fish/in' }],
  output: [{ storage_provider: 'minio.default', path: 'ana/fish/out' }]
};
const COUNTER: Serverless.IService = { name: 'counter', cpu: '0.5', memory: '256Mi' };

const NOW = Date.now() / 1000;
const LATENCY = { p50: 0.04, p95: 0.09, p99: 0.2 };
const NONE = { p50: null, p95: null, p99: null };
const METRICS: Serverless.IMetrics = {
  service: 'fish',
  total: {
    requests: 12,
    errors: 2,
    items: 12,
    sync: { requests: 9, errors: 1, items: 9 },
    async: { requests: 3, errors: 1, items: 3 }
  },
  window: {
    since_s: 3600,
    step_s: 60,
    requests: 7,
    errors: 2,
    items: 7,
    latency_s: LATENCY,
    buckets: [
      { start: NOW - 300, requests: 5, errors: 1, items: 5, latency_s: LATENCY },
      { start: NOW - 60, requests: 2, errors: 1, items: 2, latency_s: LATENCY }
    ]
  },
  sync: { requests: 5, errors: 1, items: 5, latency_s: LATENCY },
  async: { requests: 2, errors: 1, items: 2, latency_s: { p50: 1.5, p95: 2, p99: 2 }, run_s: NONE },
  jobs: { pending: 1, running: 0 }
};

function fakeServerless(services: Serverless.IService[], jobs: Serverless.IJob[] = []): ServerlessAPI {
  const batches: Serverless.IBatch[] = [
    {
      id: 'b1',
      service: 'fish',
      inputs: 'ana/nothing',
      output: 'ana/fish/out',
      status: 'failed',
      done: 0,
      total: 0,
      failed: [],
      message: 'no input files under ana/nothing',
      started: 1,
      finished: 2
    }
  ];
  const files: Record<string, Blob> = {
    'fish/out/reef.json': new Blob([JSON.stringify(PREDICTION)], { type: 'application/json' }),
    'fish/in/reef.jpg': new Blob([new Uint8Array([0xff, 0xd8, 0xff])], { type: 'image/jpeg' })
  };
  return {
    serverlessAvailability: vi.fn(async () => ({ available: true, reason: null })),
    services: vi.fn(async () => services),
    deleteService: vi.fn(async () => undefined),
    invoke: vi.fn(async () => btoa(JSON.stringify(PREDICTION))),
    serviceJobs: vi.fn(async () => [...jobs]),
    jobLog: vi.fn(async (_s: string, name: string) => `log of ${name}`),
    serviceMetrics: vi.fn(async (name: string) => {
      if (name !== 'fish') {
        throw new ReefLabError(`only the owner of service '${name}' may see its workers, logs and metrics or stop it`, 403);
      }
      return METRICS;
    }),
    makeServerless: vi.fn(async (request: Serverless.IMakeRequest) => ({ name: request.name ?? request.module })),
    batches: vi.fn(async () => [...batches]),
    startBatch: vi.fn(async () => batches[0]),
    deleteBatch: vi.fn(async (id: string) => {
      batches.splice(
        batches.findIndex(b => b.id === id),
        1
      );
    }),
    platformStorage: vi.fn(async () => PLATFORM),
    uploadFile: vi.fn(async (_c: string, path: string, file: Blob) => {
      files[path] = file;
      jobs.push(job('fish-new', { status: 'Pending', file: path.split('/').pop(), input: `ana/${path}` }));
      return { connection: 'reeflab', path };
    }),
    downloadFile: vi.fn(async (_c: string, path: string) => {
      if (!files[path]) {
        throw new ReefLabError('This item does not exist (any more).', 404);
      }
      return files[path];
    })
  };
}

async function chooseFiles(input: HTMLInputElement, files: File[]): Promise<void> {
  Object.defineProperty(input, 'files', { value: files, configurable: true });
  await act(async () => {
    input.dispatchEvent(new Event('change', { bubbles: true }));
  });
}

describe('Make serverless', () => {
  const module = { id: 'fish-detector', title: 'Fish detector', deployable: true } as never;
  const needs = { cpu: 1, gpu: 0, memory_MB: 1500, gpu_memory_MB: 0 };

  it('asks for name, CPU, memory in GB and the folders in your bucket, then says where to upload', async () => {
    const api = fakeServerless([]);
    view = await render(<MakeServerless module={module} needs={needs} api={api} />);
    await settle();
    await click(button(view.host, 'Make serverless…'));
    await settle();
    const dialog = view.host.querySelector('form')!;
    expect(dialog.textContent).toContain('Folders in your bucket ana (made for you)');
    expect(field(dialog, 'Memory (GB)').value).toBe('1.5');
    expect(field(dialog, 'Input folder').value).toBe('fish-detector/in');
    await typeInto(field(dialog, 'Service name'), 'reef-fish');
    expect(field(dialog, 'Input folder').value).toBe('reef-fish/in');
    expect(field(dialog, 'Output folder').value).toBe('reef-fish/out');
    await click(button(dialog, 'Make serverless'));
    await settle();
    expect(api.makeServerless).toHaveBeenCalledWith({
      module: 'fish-detector',
      name: 'reef-fish',
      cpu: '1',
      memory: '1500M',
      inputs: ['ana/reef-fish/in'],
      outputs: ['ana/reef-fish/out']
    });
    expect(view.host.querySelector('[role="status"]')?.textContent).toBe(
      'Service reef-fish is ready: upload files to ana/reef-fish/in to start a job each under Serverless; ' +
        'results go to ana/reef-fish/out.'
    );
  });

  it("keeps the form and shows the server's words when it refuses", async () => {
    const api = fakeServerless([]);
    api.makeServerless = vi.fn(async () => {
      throw new ReefLabError("a service named 'fish-detector' exists already", 409);
    });
    const onMade = vi.fn();
    const dialog = <ServerlessDialog module={module} needs={needs} api={api} onCancel={vi.fn()} onMade={onMade} />;
    view = await render(dialog);
    await settle();
    await typeInto(field(view.host, 'Output folder'), 'fish-detector/in/x');
    await click(button(view.host, 'Make serverless'));
    expect(view.host.textContent).toContain('Put results outside the input folder');
    expect(api.makeServerless).not.toHaveBeenCalled();
    await typeInto(field(view.host, 'Output folder'), 'results');
    await click(button(view.host, 'Make serverless'));
    await settle();
    expect(view.host.querySelector('[role="alert"]')?.textContent).toContain('exists already');
    expect(onMade).not.toHaveBeenCalled();
  });

  it('makes a service without folders where the server has no platform storage, and says so', async () => {
    const api = { ...fakeServerless([]), platformStorage: vi.fn(async () => null) };
    const dialog = <ServerlessDialog module={module} needs={needs} api={api} onCancel={vi.fn()} onMade={vi.fn()} />;
    view = await render(dialog);
    await settle();
    expect(view.host.textContent).toContain('no platform storage, so the service gets no folders');
    expect(view.host.querySelector('fieldset')).toBeNull();
    await click(button(view.host, 'Make serverless'));
    await settle();
    expect(api.makeServerless).toHaveBeenCalledWith(expect.objectContaining({ inputs: [], outputs: [] }));
  });
});

describe('Serverless services with folders', () => {
  it('uploads into the input folder, lists the job by file name and previews its result as Try does', async () => {
    const api = fakeServerless([FISH], [job('fish-old', { status: 'Failed', file: 'notes.txt' })]);
    view = await render(<ServerlessView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="fish"]')!;
    expect(row.textContent).toContain('1 CPU · 2 GB');
    expect(row.textContent).toContain('Each file uploaded to ana/fish/in starts a job; results go to ana/fish/out.');
    await click(button(row, 'Jobs'));
    await settle();
    const reef = new File([new Uint8Array([0xff, 0xd8, 0xff])], 'reef.jpg', { type: 'image/jpeg' });
    await chooseFiles(field(row, 'Files to upload to ana/fish/in'), [reef]);
    await settle();
    expect(api.uploadFile).toHaveBeenCalledWith('reeflab', 'fish/in/reef.jpg', reef);
    expect(row.textContent).toContain('Uploaded reef.jpg to ana/fish/in: its job starts in a moment.');
    const names = [...row.querySelectorAll('.jp-ReefLab-jobList .jp-ReefLab-fileName')].map(n => n.textContent);
    expect(names).toContain('reef.jpg');
    expect(names).toContain('notes.txt');

    // it succeeded: its result (in the output folder) drawn on its input (in the input folder)
    (api.serviceJobs as ReturnType<typeof vi.fn>).mockResolvedValue([
      job('fish-new', { file: 'reef.jpg', input: 'ana/fish/in/reef.jpg', outputs: ['ana/fish/out/reef.json'] })
    ]);
    await click(button(row, 'Jobs'));
    await click(button(row, 'Jobs'));
    await settle();
    await click(button(row, /reef\.jpg/));
    await settle();
    await settle();
    const result = row.querySelector('[aria-label="Answer for reef.jpg"]')!;
    expect(api.downloadFile).toHaveBeenCalledWith('reeflab', 'fish/out/reef.json', expect.anything());
    expect(api.downloadFile).toHaveBeenCalledWith('reeflab', 'fish/in/reef.jpg', expect.anything());
    expect(result.querySelector('img')?.getAttribute('alt')).toBe('reef.jpg with what the module found drawn on it');
    expect(result.querySelectorAll('svg rect')).toHaveLength(2);
    expect(result.querySelector('svg')?.getAttribute('viewBox')).toBe('0 0 640 480');
    expect(result.querySelector('table[aria-label="Objects found"]')?.querySelectorAll('tbody tr')).toHaveLength(2);
    expect(row.textContent).toContain('Result in ana/fish/out/reef.json');
    expect(row.textContent).toContain('log of fish-new');
  });

  it('never claims uploads start jobs for a service without an input folder', async () => {
    const api = fakeServerless([COUNTER]);
    view = await render(<ServerlessView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="counter"]')!;
    expect(row.textContent).toContain('No input folder: call it with Invoke, code or batches; no output folder.');
    expect(row.textContent).toContain('0.5 CPU · 268 MB');
    await click(button(row, 'Jobs'));
    await settle();
    expect(row.textContent).toContain('No jobs yet. It has no input folder');
    expect(row.textContent).not.toContain('uploads to its input folder');
    expect(row.querySelector('input[type="file"]')).toBeNull();
  });

  it('previews what Invoke answered on the image sent, and names it', async () => {
    const api = fakeServerless([FISH]);
    view = await render(<ServerlessView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="fish"]')!;
    await click(button(row, 'Invoke'));
    const reef = new File([new Uint8Array([0xff, 0xd8, 0xff])], 'reef.jpg', { type: 'image/jpeg' });
    await chooseFiles(field(row, 'File to send'), [reef]);
    await click(button(row.querySelector('.jp-ReefLab-invoke')!, 'Invoke'));
    await settle();
    const answer = row.querySelector('[aria-label="Answer for reef.jpg"]')!;
    expect(answer.querySelectorAll('svg rect')).toHaveLength(2);
    expect(answer.textContent).toContain('2 fish');
  });

  it("shows a service's calls, errors and latencies, a bar a minute; another's answer in the engine's words", async () => {
    const api = fakeServerless([FISH, COUNTER]);
    view = await render(<ServerlessView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="fish"]')!;
    await click(button(row, 'Metrics'));
    await settle();
    expect(api.serviceMetrics).toHaveBeenCalledWith('fish', 3600, 60, expect.anything());
    const text = row.querySelector('[aria-label="Metrics"]')!.textContent;
    expect(text).toContain('7 calls in the last hour · 2 errors · 12 calls since it was made');
    expect(text).toContain('Sync: 5 calls, 1 error · latency p50 40 ms, p95 90 ms, p99 200 ms');
    expect(text).toContain('Jobs: 2 finished, 1 error · queued to done p50 1500 ms');
    expect(text).toContain('run p50 –');
    expect(text).toContain('1 waiting, 0 running');
    const bars = [...row.querySelectorAll('[data-requests]')].map(b => b.getAttribute('data-requests'));
    expect(bars).toEqual(['5', '2']);

    const counter = view.host.querySelector('[aria-label="counter"]')!;
    await click(button(counter, 'Metrics'));
    await settle();
    expect(counter.querySelector('[role="alert"]')!.textContent).toContain("only the owner of service 'counter'");
  });

  it('removes a batch that ended', async () => {
    const api = fakeServerless([FISH]);
    view = await render(<ServerlessView api={api} />);
    await settle();
    const batch = view.host.querySelector('[aria-label="Batch b1"]')!;
    expect(batch.textContent).toContain('no input files under ana/nothing');
    await click(button(batch, 'Remove'));
    await settle();
    expect(api.deleteBatch).toHaveBeenCalledWith('b1');
    expect(view.host.querySelector('[aria-label="Batch b1"]')).toBeNull();
  });
});
