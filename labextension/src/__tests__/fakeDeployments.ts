/** Deployments for tests, and a deployments API in memory that records each call. */
import { vi } from 'vitest';

import { Deployments, DeploymentsAPI, ReefLabError } from '../api';

export function deployment(extra: Partial<Deployments.IDeployment> = {}): Deployments.IDeployment {
  const id = extra.id ?? '1a2b3c4d';
  return {
    id,
    owner: 'alice',
    module: 'fish-detector',
    entry_point: 'fish-detector',
    title: 'Fish detector',
    kind: 'deployment',
    profile: 'cpu-small',
    hardware: { cpu: 1, memory_MB: 2000, gpu: 0 },
    limits: { cpu: 2, memory_MB: 4000, gpu: 0 },
    warnings: [],
    suggestion: null,
    env: [],
    state: 'ready',
    reason: null,
    backend: 'local',
    created: '2026-11-23T10:00:00Z',
    started_at: '2026-11-23T10:00:00Z',
    ready_at: '2026-11-23T10:00:05Z',
    stopped_at: null,
    expires: null,
    path: `reeflab/deployments/${id}/`,
    ...extra
  };
}

/** A log stream the test feeds by hand: `push` text, then `end` or `fail` it. */
export interface IFakeLog {
  id: string;
  signal: AbortSignal;
  push: (text: string) => void;
  end: () => void;
  fail: (error: Error) => void;
}

export class FakeDeploymentsAPI implements DeploymentsAPI {
  list: Deployments.IDeployment[] = [];
  logs: IFakeLog[] = [];
  /** answers of the next predictions: a value, or an error to throw */
  json: Deployments.IPredictAnswer | ReefLabError = {
    status: 'OK',
    predictions: {
      file: 'reef.jpg',
      width: 640,
      height: 480,
      time_ms: 41.6,
      detections: [{ class_id: 0, label: 'fish', confidence: 0.91, box: [10, 20, 110, 90] }]
    }
  };
  png: Blob | ReefLabError = new Blob([new Uint8Array([0x89, 0x50])], { type: 'image/png' });

  deployments = vi.fn(async (): Promise<Deployments.IDeployment[]> => this.list.map(d => ({ ...d })));

  deleteDeployment = vi.fn(async (id: string): Promise<void> => {
    this.list = this.list.filter(d => d.id !== id);
  });

  restartDeployment = vi.fn(
    async (id: string, hardware?: Partial<Deployments.IDeployment['hardware']>): Promise<Deployments.IDeployment> => {
      const found = this.list.find(d => d.id === id);
      if (!found) {
        throw new ReefLabError(`No deployment '${id}'`, 404);
      }
      const changed = { ...found.hardware, ...hardware };
      Object.assign(found, {
        state: 'starting',
        reason: null,
        suggestion: null,
        hardware: changed,
        started_at: '2026-11-23T10:30:00Z'
      });
      return { ...found };
    }
  );

  followLogs = vi.fn(
    (id: string, onText: (text: string) => void, signal: AbortSignal): Promise<void> =>
      new Promise((resolve, reject) => {
        this.logs.push({ id, signal, push: onText, end: resolve, fail: reject });
        signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      })
  );

  predictJSON = vi.fn(async (): Promise<Deployments.IPredictAnswer> => {
    if (this.json instanceof ReefLabError) {
      throw this.json;
    }
    return this.json;
  });

  predictImage = vi.fn(async (): Promise<Blob> => {
    if (this.png instanceof ReefLabError) {
      throw this.png;
    }
    return this.png;
  });
}
