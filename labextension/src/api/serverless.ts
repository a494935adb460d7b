/** Serverless services on the OSCAR-compatible engine and batches, through the user's server. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { storageApi } from './storage';
import { json, ReefLabError, requestAPI, requestText } from './transport';
import { Serverless, Storage } from './types';

/** A path under the OSCAR API of the serverless engine, as forwarded by the user's server. */
function oscarEndpoint(...parts: string[]): string {
  return URLExt.join('serverless', 'oscar', ...parts.map(encodeURIComponent));
}

/** A path for one batch of the user's server. */
function batchEndpoint(id: string): string {
  return URLExt.join('serverless', 'batches', encodeURIComponent(id));
}

/** A file's bytes as base64, the body OSCAR's run and job endpoints take. */
export async function fileToBase64(file: Blob): Promise<string> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

/**
 * The Content-Disposition that gives the serverless engine the file's own name (any name: RFC 8187's
 * percent-encoded form), so that the module sees it and answers and errors name it.
 */
export function contentDisposition(name: string): string {
  const encoded = encodeURIComponent(name).replace(/['()*!]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename*=UTF-8''${encoded}`;
}

export const serverlessApi = {
  services: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Serverless.IService[]> =>
    requestAPI<Serverless.IService[]>(oscarEndpoint('system', 'services'), { signal }, settings),
  deleteService: (name: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestText(oscarEndpoint('system', 'services', name), { method: 'DELETE' }, settings).then(() => undefined),
  /** A synchronous call with one file (named, when it has a name): base64 of the output file, or the script's log. */
  invoke: async (
    name: string,
    file: Blob,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings
  ): Promise<string> => {
    const headers: Record<string, string> =
      file instanceof File ? { 'Content-Disposition': contentDisposition(file.name) } : {};
    const init = { method: 'POST', body: await fileToBase64(file), signal, headers };
    return requestText(oscarEndpoint('run', name), init, settings);
  },
  /** Its calls, errors and latencies over the last `since` seconds (buckets of `step`), counted by the engine. */
  serviceMetrics: (
    name: string,
    since = 3600,
    step = 60,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings
  ): Promise<Serverless.IMetrics> =>
    requestAPI<Serverless.IMetrics>(
      oscarEndpoint('system', 'services', name, 'metrics') + `?since=${since}&step=${step}`,
      { signal },
      settings
    ),
  serviceJobs: (name: string, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Serverless.IJob[]> =>
    requestAPI<{ jobs: Record<string, Omit<Serverless.IJob, 'name'>> }>(
      oscarEndpoint('system', 'logs', name),
      { signal },
      settings
    ).then(answer => Object.entries(answer.jobs ?? {}).map(([jobName, job]) => ({ ...job, name: jobName }))),
  jobLog: (name: string, job: string, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<string> =>
    requestText(oscarEndpoint('system', 'logs', name, job), { signal }, settings),
  makeServerless: (request: Serverless.IMakeRequest, settings?: ServerConnection.ISettings): Promise<Serverless.IService> =>
    requestAPI<Serverless.IService>('serverless/services', json(request), settings),
  batches: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Serverless.IBatch[]> =>
    requestAPI<Serverless.IBatch[]>('serverless/batches', { signal }, settings),
  /** Asks the engine for its info: a 503 means this server has none configured. */
  serverlessAvailability: (settings?: ServerConnection.ISettings): Promise<Serverless.IAvailability> =>
    requestAPI<unknown>(oscarEndpoint('system', 'info'), {}, settings).then(
      () => ({ available: true, reason: null }),
      error => {
        if (error instanceof ReefLabError && (error.status === 503 || error.status === 404)) {
          return { available: false, reason: error.message };
        }
        throw error;
      }
    ),
  startBatch: (request: Serverless.IBatchRequest, settings?: ServerConnection.ISettings): Promise<Serverless.IBatch> =>
    requestAPI<Serverless.IBatch>('serverless/batches', json(request), settings),
  /** Forget a batch that ended; its results stay in storage. */
  deleteBatch: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(batchEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  /** The user's own bucket on the platform (the `reeflab` connection), where services' folders are; null if none. */
  platformStorage: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Storage.IConnection | null> =>
    storageApi.connections(signal, settings).then(list => list.find(c => c.platform) ?? null),
  uploadFile: storageApi.uploadFile,
  downloadFile: storageApi.downloadFile
};

/** The calls the Serverless section makes. */
export type ServerlessAPI = typeof serverlessApi;
