import * as React from 'react';
import { afterEach, describe, expect, it } from 'vitest';

import type { Monitoring, MonitoringAPI } from '../api/monitoring';
import { MonitoringView } from '../monitoringView';
import { IRendered, render, settle } from './render';

let view: IRendered | null = null;

afterEach(() => {
  view?.unmount();
  view = null;
});

const NOW = Date.now() / 1000;

function metrics(): Monitoring.IMetrics {
  const latency = { p50: 0.03, p95: 0.06, p99: 0.12 };
  return {
    deployment: 'abcd1234',
    total: { requests: 260, errors: 3, items: 260 },
    window: {
      since_s: 3600,
      step_s: 60,
      requests: 253,
      errors: 3,
      items: 253,
      latency_s: latency,
      buckets: [
        { start: NOW - 180, requests: 200, errors: 0, items: 200, latency_s: latency },
        { start: NOW - 120, requests: 53, errors: 3, items: 53, latency_s: latency }
      ]
    },
    drift: { settings: { enabled: false }, alert: false, last: null }
  };
}

function fakeApi(drift: Monitoring.IDrift, seen: string[] = []): MonitoringAPI {
  return {
    metrics: (id: string) => {
      seen.push(`metrics ${id}`);
      return Promise.resolve(metrics());
    },
    drift: (id: string) => {
      seen.push(`drift ${id}`);
      return Promise.resolve(drift);
    }
  };
}

const evaluation = (p: number, drift: boolean, ts: number): Monitoring.IEvaluation => ({
  ts,
  statistic: drift ? 0.3 : 0.001,
  p_value: p,
  size: 50,
  drift
});

describe('a deployment’s monitoring', () => {
  it('shows its requests, errors and latency, a bar a minute, and a drift alert with its p-values', async () => {
    const seen: string[] = [];
    const drift: Monitoring.IDrift = {
      settings: { enabled: true, alpha: 0.01, window: 50, reference: 'ref' },
      alert: true,
      last: evaluation(0.002, true, NOW - 10),
      evaluations: [evaluation(0.5, false, NOW - 100), evaluation(0.3, false, NOW - 50), evaluation(0.002, true, NOW - 10)],
      events: [{ ts: NOW - 10, kind: 'drift-alert', message: 'drift detected: the last 50 inputs differ' }]
    };
    view = await render(<MonitoringView deploymentId="abcd1234" api={fakeApi(drift, seen)} />);
    await settle();
    const text = view.host.textContent ?? '';
    expect(seen).toEqual(['metrics abcd1234', 'drift abcd1234']);
    expect(text).toContain('253 requests in the last hour');
    expect(text).toContain('3 errors');
    expect(text).toContain('p95 60 ms');
    const bars = [...view.host.querySelectorAll('[data-requests]')].map(b => [
      b.getAttribute('data-requests'),
      b.getAttribute('data-errors')
    ]);
    expect(bars).toEqual([
      ['200', '0'],
      ['53', '3']
    ]);
    expect(view.host.querySelector('[role="status"]')?.textContent).toBe('Drift alert');
    expect(view.host.querySelectorAll('circle')).toHaveLength(3);
    expect(text).toContain('drift detected: the last 50 inputs differ');
  });

  it('says how to turn drift detection on when it is off', async () => {
    const drift: Monitoring.IDrift = { settings: { enabled: false }, alert: false, last: null, evaluations: [], events: [] };
    view = await render(<MonitoringView deploymentId="abcd1234" api={fakeApi(drift)} />);
    await settle();
    expect(view.host.textContent).toContain('Drift detection is off');
    expect(view.host.querySelector('[role="status"]')).toBeNull();
  });
});
