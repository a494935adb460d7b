/** Elyra pipeline runs, and the examples in your files. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { json, requestAPI } from './transport';
import { Pipelines, ReefLab } from './types';

/** A path for one pipeline run. */
function pipelineEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('pipelines', encodeURIComponent(id), ...rest);
}

export const pipelinesApi = {
  pipelineRuns: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Pipelines.IRun[]> =>
    requestAPI<{ runs: Pipelines.IRun[] }>('pipelines', { signal }, settings).then(answer => answer.runs),
  runPipeline: (request: Pipelines.IRequest, settings?: ServerConnection.ISettings): Promise<Pipelines.IRun> =>
    requestAPI<Pipelines.IRun>('pipelines', json(request), settings),
  cancelPipelineRun: (id: string, settings?: ServerConnection.ISettings): Promise<Pipelines.IRun> =>
    requestAPI<Pipelines.IRun>(pipelineEndpoint(id, 'cancel'), { method: 'POST' }, settings),
  deletePipelineRun: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(pipelineEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  /** The run's log, or with `node` that node's own (its cells' output). */
  pipelineLog: (
    id: string,
    node: string | null,
    tail = 200,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings
  ): Promise<string[]> => {
    const params = new URLSearchParams({ tail: String(tail) });
    if (node) {
      params.append('node', node);
    }
    return requestAPI<{ lines: string[] }>(`${pipelineEndpoint(id, 'log')}?${params}`, { signal }, settings).then(
      answer => answer.lines
    );
  }
};

/** The examples in your files (server_extension/reeflab/examples.py). */
export const examplesApi = {
  refreshExamples: (settings?: ServerConnection.ISettings): Promise<ReefLab.IExamplesReport> =>
    requestAPI<ReefLab.IExamplesReport>('examples', { method: 'POST' }, settings)
};

/** The calls the pipeline runs of the Jobs section make. */
export type PipelinesAPI = typeof pipelinesApi;
