import * as React from 'react';
import { afterEach, describe, expect, it } from 'vitest';

import { ReefLabError } from '../api';
import type { Platform, PlatformAPI } from '../api/platform';
import { PlatformSection } from '../platform';
import { IRendered, render, settle } from './render';

let view: IRendered | null = null;

afterEach(() => {
  view?.unmount();
  view = null;
});

const HOUR = 3600;
const SINCE = Math.floor(Date.now() / 1000 / HOUR) * HOUR - 23 * HOUR;

const STATUS: Platform.IStatus = {
  users: [
    {
      user: 'ada',
      admin: true,
      running: { deployments: [], jobs: [], pipelines: [], checks: [] },
      held: { cpu: 0, memory_MB: 0, gpu: 0 },
      servers: {}
    },
    {
      user: 'ben',
      admin: false,
      running: {
        deployments: [{ id: 'd1', title: 'Fish detector', state: 'running' }],
        jobs: [
          { id: 'j1', title: 'train.ipynb', state: 'running' },
          { id: 'j2', title: 'eval.ipynb', state: 'queued' }
        ],
        pipelines: [],
        checks: []
      },
      held: { cpu: 2, memory_MB: 4000, gpu: 0 },
      servers: { default: { ready: true, started: '2026-12-06T08:00:00Z' } }
    }
  ],
  machine: {
    cpu: { count: 4, free: 1.5 },
    memory_MB: { total: 32000, available: 16000 },
    gpus: [{ index: 0, name: 'H100', memory_MB: { total: 80000, free: 60000 } }]
  }
};

const USAGE: Platform.IUsage = {
  since: SINCE,
  step_s: HOUR,
  users: {
    ben: {
      cpu_hours: 0.5,
      gpu_hours: 0,
      requests: 12,
      buckets: [
        { start: SINCE + 20 * HOUR, cpu_hours: 0.2, gpu_hours: 0, requests: 2, memory_max_MB: 900 },
        { start: SINCE + 22 * HOUR, cpu_hours: 0.3, gpu_hours: 0, requests: 10, memory_max_MB: 1200 }
      ]
    },
    cyd: { cpu_hours: 0.001, gpu_hours: 0, requests: 0, buckets: [] } // no account any more, still counted
  }
};

function fakeApi(status: () => Promise<Platform.IStatus>, seen: string[] = []): PlatformAPI {
  return {
    status: () => {
      seen.push('status');
      return status();
    },
    usage: (since: number, step: number) => {
      seen.push(`usage ${since} ${step}`);
      return Promise.resolve(USAGE);
    }
  };
}

async function unfold(host: HTMLElement): Promise<void> {
  host.querySelector<HTMLButtonElement>('.jp-ReefLab-sectionToggle')!.click();
  await settle();
}

describe('the Platform section', () => {
  it('shows an admin the free capacity, what each user runs and their usage, a bar per hour', async () => {
    const seen: string[] = [];
    view = await render(<PlatformSection api={fakeApi(() => Promise.resolve(STATUS), seen)} visible={true} />);
    await settle();
    const section = view.host.querySelector('section[aria-label="Platform"]')!;
    expect(section).not.toBeNull();
    expect(seen).toEqual(['status']); // folded: the usage is not asked yet
    await unfold(view.host);
    expect([...seen].sort()).toEqual(['status', 'status', 'usage 86400 3600']); // unfolded: both, at once
    const free = section.querySelector('[aria-label="Free capacity"]')!.textContent;
    expect(free).toContain('1.5 of 4 CPUs idle');
    expect(free).toContain('16.0 GB of 32.0 GB memory');
    expect(free).toContain('GPU 0 (H100): 60.0 GB of 80.0 GB free');
    const rows = [...section.querySelectorAll('li.jp-ReefLab-platformUser')];
    expect(rows.map(r => r.getAttribute('aria-label'))).toEqual(['ada', 'ben', 'cyd']);
    const [ada, ben, cyd] = rows;
    expect(ada.textContent).toContain('admin');
    expect(ada.querySelector('[aria-label="Running"]')!.textContent).toBe('no server');
    expect(ben.querySelector('[aria-label="Running"]')!.textContent).toBe('server running · 1 deployment · 2 jobs');
    expect(ben.querySelector('[aria-label="Running"]')!.getAttribute('title')).toContain('job eval.ipynb (queued)');
    expect(ben.querySelector('[aria-label="Usage"]')!.textContent).toBe('0.50 CPU-h · 0 GPU-h · 12 requests (last day)');
    const bars = [...ben.querySelectorAll('[data-cpu_hours]')].map(b => [
      b.getAttribute('data-cpu_hours'),
      b.getAttribute('data-requests')
    ]);
    expect(bars).toEqual([
      ['0.2', '2'],
      ['0.3', '10']
    ]);
    // the taller bar is the hour with more CPU
    const heights = [...ben.querySelectorAll('rect')].map(r => Number(r.getAttribute('height')));
    expect(heights[1]).toBeGreaterThan(heights[0]);
    expect(cyd.textContent).toContain('no account on the hub now');
    expect(cyd.querySelector('svg')).toBeNull();

    const week = [...section.querySelectorAll('button')].find(b => b.textContent === 'Last week')!;
    week.click();
    await settle();
    expect(seen[seen.length - 1]).toBe(`usage ${7 * 86400} ${6 * 3600}`);
    expect(week.getAttribute('aria-pressed')).toBe('true');
    expect(ben.querySelector('[aria-label="Usage"]')!.textContent).toContain('(last week)');
  });

  it('is absent for a user who is not a hub admin (the server answers 403)', async () => {
    const refused = () => Promise.reject(new ReefLabError('The usage service says: Only hub admins see…', 403));
    view = await render(<PlatformSection api={fakeApi(refused)} visible={true} />);
    await settle();
    expect(view.host.querySelector('section')).toBeNull();
    expect(view.host.textContent).toBe('');
  });

  it('says so when the usage service is not configured', async () => {
    const message = "The platform's usage service is not configured here (the hub gives user servers its address…)";
    const missing = () => Promise.reject(new ReefLabError(message, 503));
    view = await render(<PlatformSection api={fakeApi(missing)} visible={true} />);
    await settle();
    await unfold(view.host);
    expect(view.host.querySelector('section[aria-label="Platform"] [role="alert"]')!.textContent).toContain(
      'usage service is not configured'
    );
  });

  it('asks nothing while the panel is hidden', async () => {
    const seen: string[] = [];
    view = await render(<PlatformSection api={fakeApi(() => Promise.resolve(STATUS), seen)} visible={false} />);
    await settle();
    expect(seen).toEqual([]);
  });
});
