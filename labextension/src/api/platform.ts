/** The platform's status and each user's usage, for hub admins (GET /reeflab/api/platform/status, /usage): the
 * user's server asks the usage service with its own token; others are answered 403. */
import { requestAPI } from './transport';

export namespace Platform {
  export interface IFigures {
    cpu: number;
    memory_MB: number;
    gpu: number;
  }

  export interface IRun {
    id: string;
    title: string;
    state: string;
  }

  export interface IUserStatus {
    user: string;
    admin?: boolean;
    /** local mode: what they run, by kind (deployments, jobs, pipelines, checks), and what it holds */
    running?: Record<string, IRun[]>;
    held?: IFigures;
    servers?: Record<string, { ready: boolean; started: string | null }>;
    /** kubernetes mode: the pods of their namespace and what they requested */
    namespace?: string;
    pods?: { name: string; phase: string | null; app: string | null; requests: IFigures }[];
    requested?: IFigures;
  }

  export interface IMachine {
    cpu: { count: number; free: number };
    memory_MB: { total: number; available: number };
    gpus: { index: number; name: string; memory_MB: { total: number; free: number } }[];
  }

  export interface IStatus {
    users: IUserStatus[];
    /** local mode */
    machine?: IMachine;
    /** kubernetes mode: the schedulable nodes' totals */
    cluster?: { allocatable: IFigures; requested: IFigures; free: IFigures };
  }

  export interface IUsageBucket {
    start: number;
    cpu_hours: number;
    gpu_hours: number;
    requests: number;
    memory_max_MB: number;
  }

  export interface IUserUsage {
    cpu_hours: number;
    gpu_hours: number;
    requests: number;
    buckets: IUsageBucket[];
  }

  export interface IUsage {
    /** the first bucket's start (seconds since the epoch) */
    since: number;
    step_s: number;
    users: Record<string, IUserUsage>;
  }
}

export const platformApi = {
  status: (signal?: AbortSignal): Promise<Platform.IStatus> =>
    requestAPI<Platform.IStatus>('platform/status', { signal }),
  /** Each user's usage over the last `since` seconds in `step` second buckets (a whole number of hours). */
  usage: (since: number, step: number, signal?: AbortSignal): Promise<Platform.IUsage> =>
    requestAPI<Platform.IUsage>(`platform/usage?since=${since}&step=${step}`, { signal })
};

export type PlatformAPI = typeof platformApi;
