/** The Storage, Serverless and Jobs sections against APIs in memory, driven as a user would. */
import * as React from 'react';
import { act } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { Jobs, JobsAPI, ReefLabError, Serverless, ServerlessAPI, Storage, StorageAPI } from '../api';
import { JobsView } from '../jobs';
import { ServerlessView } from '../serverless';
import { StorageView } from '../storage';
import { button, click, field, IRendered, render, select, settle, typeInto } from './render';

let view: IRendered | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
});

function connection(name: string, extra: Partial<Storage.IConnection> = {}): Storage.IConnection {
  return {
    name,
    kind: 'webdav',
    created: '2026-11-23T10:00:00+00:00',
    platform: false,
    location: `https://dav.example.org/${name}`,
    description: `WebDAV folder https://dav.example.org/${name}`,
    bucket_path: null,
    mount: { state: 'unmounted', path: `storage/${name}`, reason: null },
    ...extra
  };
}

function fakeStorage(): StorageAPI & { list: Storage.IConnection[] } {
  const list = [connection('reeflab', { kind: 's3', platform: true, bucket_path: 'ana' })];
  const entries = (path: string): Storage.IEntry[] =>
    path === ''
      ? [
          { name: 'reef.jpg', type: 'file', size: 2048, modified: null, path: 'reef.jpg' },
          { name: 'surveys', type: 'directory', size: null, modified: null, path: 'surveys' }
        ]
      : [{ name: 'day1.jpg', type: 'file', size: 10, modified: null, path: `${path}/day1.jpg` }];
  return {
    list,
    storageInfo: vi.fn(async () => ({ mounts: { available: true, reason: null }, mount_folder: 'storage' })),
    connections: vi.fn(async () => [...list]),
    createConnection: vi.fn(async (request: Storage.IRequest) => {
      if (request.kind === 'webdav' && request.password === 'wrong') {
        throw new ReefLabError('Connection not saved: the server refused the user or password.', 400);
      }
      const made = connection(request.name);
      list.push(made);
      return made;
    }),
    deleteConnection: vi.fn(async (name: string) => {
      list.splice(
        list.findIndex(c => c.name === name),
        1
      );
    }),
    testConnection: vi.fn(async () => ({ ok: true, seconds: 0.25 })),
    mount: vi.fn(async (name: string) => {
      const c = list.find(x => x.name === name)!;
      c.mount = { ...c.mount, state: 'mounted' };
      return c.mount;
    }),
    unmount: vi.fn(async () => ({ state: 'unmounted' as const, path: '', reason: null })),
    listFiles: vi.fn(async (_name: string, path: string, page?: string | null) => ({
      connection: _name,
      path,
      items: page ? [{ name: 'zz.jpg', type: 'file' as const, size: 1, modified: null, path: 'zz.jpg' }] : entries(path),
      next_page: path === '' && !page ? 'p2' : null
    }))
  };
}

describe('Storage section', () => {
  it('adds a WebDAV connection, refusing first with the server words, and never shows the password', async () => {
    const api = fakeStorage();
    view = await render(<StorageView api={api} />);
    await settle();
    expect(view.host.querySelector('[aria-label="reeflab"]')?.textContent).toContain('platform');
    // named reeflab, but its paths are those of the user's bucket: the row says which
    expect(view.host.querySelector('[aria-label="reeflab"]')?.textContent).toContain(
      'Your bucket ana on the platform: serverless input and output paths start with ana/'
    );
    expect(button(view.host, 'Delete')!.disabled).toBe(true); // the platform's own
    await click(button(view.host, 'Add a connection'));
    await click(button(view.host, 'Add'));
    expect(view.host.textContent).toContain('Name: 1-32 lowercase letters');
    expect(api.createConnection).not.toHaveBeenCalled();
    await typeInto(field(view.host, 'Name'), 'cloud');
    await typeInto(field(view.host, 'URL'), 'https://dav.example.org/remote.php/dav/files/ana');
    await typeInto(field(view.host, 'User'), 'ana');
    await typeInto(field(view.host, 'App password'), 'wrong');
    await click(button(view.host, 'Add'));
    await settle();
    expect(view.host.querySelector('[role="alert"]')?.textContent).toContain('refused the user or password');
    await typeInto(field(view.host, 'App password'), 's3cret-pass');
    await click(button(view.host, 'Add'));
    await settle();
    expect(api.createConnection).toHaveBeenLastCalledWith(expect.objectContaining({ name: 'cloud', password: 's3cret-pass' }));
    expect(view.host.querySelector('[aria-label="cloud"]')).not.toBeNull();
    expect(view.host.textContent).toContain('cloud was added');
    expect(view.host.innerHTML).not.toContain('s3cret-pass');
  });

  it('browses folders page by page, tests, mounts and deletes with a confirmation', async () => {
    const api = fakeStorage();
    api.list.push(connection('cloud'));
    view = await render(<StorageView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="cloud"]')!;
    await click(button(row, 'Browse'));
    await settle();
    const names = () => [...row.querySelectorAll('.jp-ReefLab-files li')].map(li => li.textContent);
    expect(names()[0]).toContain('surveys'); // folders first
    expect(names()[1]).toContain('reef.jpg');
    expect(names()[1]).toContain('2.0 kB');
    await click(button(row, 'Show more'));
    await settle();
    expect(names().some(n => n?.includes('zz.jpg'))).toBe(true);
    await click(button(row, 'surveys'));
    await settle();
    expect(api.listFiles).toHaveBeenLastCalledWith('cloud', 'surveys', null, expect.anything());
    expect(names().some(n => n?.includes('day1.jpg'))).toBe(true);
    await click(button(row, 'Test'));
    await settle();
    expect(row.textContent).toContain('It works: answered in 0.25 s.');
    await click(button(row, 'Mount'));
    await settle();
    expect(api.mount).toHaveBeenCalledWith('cloud');
    expect(view.host.querySelector('[aria-label="cloud"]')!.textContent).toContain('In your files at ~/storage/cloud');
    await click(button(view.host.querySelector('[aria-label="cloud"]')!, 'Delete'));
    await click(button(view.host, 'Delete it'));
    await settle();
    expect(api.deleteConnection).toHaveBeenCalledWith('cloud');
    expect(view.host.querySelector('[aria-label="cloud"]')).toBeNull();
  });
});

function fakeServerless(available = true): ServerlessAPI {
  const batches: Serverless.IBatch[] = [];
  return {
    serverlessAvailability: vi.fn(async () =>
      available ? { available: true, reason: null } : { available: false, reason: 'no serverless engine is configured' }
    ),
    services: vi.fn(async () => [
      {
        name: 'fish',
        cpu: '1',
        memory: '2000M',
        environment: { variables: { REEFLAB_MODULE: 'fish-detector' } },
        output: [{ path: 'ana/fish/out' }]
      }
    ]),
    deleteService: vi.fn(async () => undefined),
    invoke: vi.fn(async () => btoa(JSON.stringify({ predictions: { detections: [{ label: 'fish' }] } }))),
    serviceJobs: vi.fn(async () => [
      { name: 'fish-1', status: 'Succeeded', creation_time: '2026-11-23T10:00:00', start_time: null, finish_time: null },
      { name: 'fish-2', status: 'Failed', creation_time: '2026-11-23T11:00:00', start_time: null, finish_time: null }
    ]),
    jobLog: vi.fn(async (_s: string, job: string) => `log of ${job}\nValueError: not an image`),
    serviceMetrics: vi.fn(async () => {
      throw new ReefLabError('not in this test', 404);
    }),
    makeServerless: vi.fn(async () => ({ name: 'fish' })),
    batches: vi.fn(async () => [...batches]),
    startBatch: vi.fn(async (request: Serverless.IBatchRequest) => {
      const batch: Serverless.IBatch = {
        id: 'b1',
        service: request.service,
        inputs: request.inputs,
        output: 'ana/out',
        status: 'running',
        done: 5,
        total: 20,
        failed: [],
        message: '',
        started: 1,
        finished: null
      };
      batches.push(batch);
      return batch;
    }),
    deleteBatch: vi.fn(async () => undefined),
    platformStorage: vi.fn(async () => null),
    uploadFile: vi.fn(async (_c: string, path: string) => ({ connection: 'reeflab', path })),
    downloadFile: vi.fn(async () => new Blob([]))
  };
}

describe('Serverless section', () => {
  it('says in words when the server has no engine', async () => {
    const api = fakeServerless(false);
    view = await render(<ServerlessView api={api} />);
    await settle();
    expect(view.host.textContent).toContain('Serverless is not set up on this server: no serverless engine');
    expect(api.services).not.toHaveBeenCalled();
  });

  it('invokes a service with a file, shows its jobs and a log, and a batch with a progress bar', async () => {
    const api = fakeServerless();
    view = await render(<ServerlessView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="fish"]')!;
    expect(row.textContent).toContain('fish-detector');
    await click(button(row, 'Invoke'));
    const input = row.querySelector<HTMLInputElement>('input[type="file"]')!;
    const file = new File(['jpeg bytes'], 'reef.jpg', { type: 'image/jpeg' });
    Object.defineProperty(input, 'files', { value: [file] });
    await act(async () => {
      input.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await click(button(row.querySelector('.jp-ReefLab-invoke')!, 'Invoke'));
    await settle();
    expect(api.invoke).toHaveBeenCalledWith('fish', file, expect.anything());
    expect(row.textContent).toContain('1 fish found');
    await click(button(row, 'Jobs'));
    await settle();
    const jobs = [...row.querySelectorAll('.jp-ReefLab-jobList li')].map(li => li.textContent);
    expect(jobs[0]).toContain('failed'); // newest first
    await click(button(row, /fish-2/));
    await settle();
    expect(row.textContent).toContain('ValueError: not an image');
    await click(button(view.host, 'New batch'));
    await typeInto(field(view.host, 'Files in (bucket/folder)'), 'ana/images');
    await click(button(view.host, 'Start the batch'));
    await settle();
    expect(api.startBatch).toHaveBeenCalledWith({ service: 'fish', inputs: 'ana/images', output: 'ana/fish/out' });
    const bar = view.host.querySelector<HTMLProgressElement>('progress[aria-label="Progress of batch b1"]')!;
    expect(bar.value).toBe(25);
    expect(view.host.textContent).toContain('5 of 20 files');
  });
});

function job(id: string, extra: Partial<Jobs.IJob> = {}): Jobs.IJob {
  return {
    id,
    title: `train ${id}`,
    notebook: 'train_yolo.ipynb',
    output: `jobs/${id}/train_yolo.ipynb`,
    output_url: `lab/tree/jobs/${id}/train_yolo.ipynb`,
    parameters: {},
    kernel: 'python3',
    profile: 'cpu-small',
    cpu: 1,
    memory_MB: 2000,
    gpu: 0,
    state: 'running',
    reason: null,
    progress: { cell: 4, cells: 10, source: 'model.train(epochs=3)' },
    error: null,
    backend: 'local',
    created: `2026-11-23T10:0${id.length}:00`,
    started_at: null,
    finished_at: null,
    ...extra
  };
}

describe('Jobs section', () => {
  it('shows live progress, the failing cell, logs, cancels, and links MLflow runs', async () => {
    const list = [
      job('a'),
      job('bb', {
        state: 'failed',
        error: { cell_index: 2, execution_count: 3, ename: 'KeyError', evalue: "'epochs'", source: '' }
      })
    ];
    const api: JobsAPI = {
      jobs: vi.fn(async () => list.map(j => ({ ...j }))),
      cancelJob: vi.fn(async (id: string) => ({ ...list.find(j => j.id === id)!, state: 'cancelled' as const })),
      deleteJob: vi.fn(async () => undefined),
      jobLog: vi.fn(async () => ['Epoch 1/3', 'Epoch 2/3']),
      trainingRuns: vi.fn(async () => [
        {
          id: 'r1',
          name: 'yolo-run',
          experiment: 'ana/default',
          status: 'FINISHED',
          start_time: 1,
          end_time: 2,
          params: {},
          metrics: {},
          path: 'reeflab/mlflow/#/experiments/1/runs/r1'
        }
      ])
    };
    view = await render(<JobsView api={api} />);
    await settle();
    const running = view.host.querySelector('[aria-label="train a"]')!;
    expect(running.textContent).toContain('cell 4 of 10: model.train(epochs=3)');
    expect(running.querySelector('progress')!.value).toBe(3);
    expect(view.host.querySelector('[aria-label="train bb"]')!.textContent).toContain("KeyError in cell 3: 'epochs'");
    await click(button(running, 'Logs'));
    await settle();
    expect(running.textContent).toContain('Epoch 2/3');
    await click(button(running, 'Cancel'));
    await settle();
    expect(api.cancelJob).toHaveBeenCalledWith('a');
    expect(view.host.querySelector('[aria-label="train a"]')!.textContent).toContain('cancelled');
    const link = view.host.querySelector<HTMLAnchorElement>('[aria-label="Your training runs"] a')!;
    expect(link.textContent).toBe('yolo-run');
    expect(link.getAttribute('href')).toMatch(/reeflab\/mlflow\/#\/experiments\/1\/runs\/r1$/);
  });

  it('shows a distributed job with its ranks, the failing rank, and each rank\'s log', async () => {
    const failed = job('ddp', {
      state: 'failed',
      processes: 2,
      nodes: 1,
      failed_rank: 1,
      reason: 'rank 1 failed: ValueError: rank 1 found no data',
      error: { cell_index: 1, execution_count: 2, ename: 'ValueError', evalue: 'rank 1 found no data', source: '' }
    });
    const api: JobsAPI = {
      jobs: vi.fn(async () => [failed]),
      cancelJob: vi.fn(),
      deleteJob: vi.fn(async () => undefined),
      jobLog: vi.fn(
        async (_id: string, _tail?: number, _signal?: AbortSignal, _settings?: unknown, rank?: number | null) =>
          typeof rank === 'number' ? [`output of rank ${rank}`] : ['[reeflab] torchrun --nproc-per-node 2']
      ),
      trainingRuns: vi.fn(async () => [])
    };
    view = await render(<JobsView api={api} />);
    await settle();
    const row = view.host.querySelector('[aria-label="train ddp"]')!;
    expect(row.textContent).toContain('cpu-small · 2 ranks');
    expect(row.textContent).toContain('Rank 1: ValueError in cell 2: rank 1 found no data');
    await click(button(row, 'Logs'));
    await settle();
    expect(row.textContent).toContain('output of rank 1'); // the failing rank's log first
    const picker = row.querySelector<HTMLSelectElement>('select[aria-label="Log of train ddp"]')!;
    expect([...picker.options].map(o => o.text)).toEqual(['Job (torchrun)', 'Rank 0', 'Rank 1']);
    await select(picker, '0');
    await settle();
    expect(row.textContent).toContain('output of rank 0');
    await select(picker, 'job');
    await settle();
    expect(row.textContent).toContain('torchrun --nproc-per-node 2');
    expect(api.jobLog).toHaveBeenCalledWith('ddp', 200, expect.anything(), undefined, 0);
  });
});
