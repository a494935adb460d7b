/** A deployment's request metrics and drift detection (GET /reeflab/api/deployments/<id>/metrics, /drift). */
import { URLExt } from '@jupyterlab/coreutils';

import { requestAPI } from './transport';

export namespace Monitoring {
  export interface ILatency {
    p50: number | null;
    p95: number | null;
    p99: number | null;
  }

  export interface ICounts {
    requests: number;
    errors: number;
    items: number;
  }

  export interface IBucket extends ICounts {
    /** seconds since the epoch */
    start: number;
    latency_s: ILatency;
  }

  export interface IEvaluation {
    ts: number;
    statistic: number;
    p_value: number;
    size: number;
    drift: boolean;
  }

  export interface IDriftState {
    settings: { enabled: boolean; alpha?: number; window?: number; reference?: string };
    alert: boolean;
    last: IEvaluation | null;
  }

  export interface IMetrics {
    deployment: string;
    total: ICounts;
    window: ICounts & { since_s: number; step_s: number; latency_s: ILatency; buckets: IBucket[] };
    drift: IDriftState;
  }

  export interface IEvent {
    ts: number;
    kind: string;
    message: string;
  }

  export interface IDrift extends IDriftState {
    evaluations: IEvaluation[];
    events: IEvent[];
  }
}

function endpoint(id: string, what: string, query = ''): string {
  return URLExt.join('deployments', encodeURIComponent(id), what) + query;
}

export const monitoringApi = {
  /** Its predict requests in the last `since` seconds, in buckets of `step` seconds. */
  metrics: (id: string, since = 3600, step = 60, signal?: AbortSignal): Promise<Monitoring.IMetrics> =>
    requestAPI<Monitoring.IMetrics>(endpoint(id, 'metrics', `?since=${since}&step=${step}`), { signal }),
  drift: (id: string, signal?: AbortSignal): Promise<Monitoring.IDrift> =>
    requestAPI<Monitoring.IDrift>(endpoint(id, 'drift'), { signal })
};

export type MonitoringAPI = typeof monitoringApi;
