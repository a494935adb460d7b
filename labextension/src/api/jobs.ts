/** Notebook jobs and your MLflow training runs. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { examplesApi, pipelinesApi, PipelinesAPI } from './pipelines';
import { requestAPI } from './transport';
import { Jobs } from './types';

/** A path for one notebook job. */
function jobEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('jobs', encodeURIComponent(id), ...rest);
}

export const jobsApi = {
  ...pipelinesApi,
  ...examplesApi,
  jobs: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Jobs.IJob[]> =>
    requestAPI<{ jobs: Jobs.IJob[] }>('jobs', { signal }, settings).then(answer => answer.jobs),
  cancelJob: (id: string, settings?: ServerConnection.ISettings): Promise<Jobs.IJob> =>
    requestAPI<Jobs.IJob>(jobEndpoint(id, 'cancel'), { method: 'POST' }, settings),
  deleteJob: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(jobEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  /** its log's last lines; with `rank`, that rank's own log (a distributed job) */
  jobLog: (
    id: string,
    tail = 200,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings,
    rank?: number | null
  ): Promise<string[]> =>
    requestAPI<{ lines: string[] }>(
      `${jobEndpoint(id, 'log')}?tail=${tail}${typeof rank === 'number' ? `&rank=${rank}` : ''}`,
      { signal },
      settings
    ).then(answer => answer.lines),
  trainingRuns: (max = 10, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Jobs.IRun[]> =>
    requestAPI<{ runs: Jobs.IRun[] }>(`training/runs?max_results=${max}`, { signal }, settings).then(
      answer => answer.runs
    )
};

/** The calls the Jobs section makes (without the pipeline calls, it shows notebook jobs only). */
export type JobsAPI = Omit<typeof jobsApi, keyof PipelinesAPI | keyof typeof examplesApi> &
  Partial<PipelinesAPI> &
  Partial<typeof examplesApi>;
