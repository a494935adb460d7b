/** The marketplace's calls: the catalogue, the platform's info and profiles, and deployments of modules. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ChecksAPI, checksApi, PublishAPI } from './checks';
import { pipelinesApi } from './pipelines';
import { serverlessApi } from './serverless';
import { apiURL, fetchOK, json, ReefLabError, requestAPI } from './transport';
import { Catalog, Deployments, ReefLab } from './types';

/**
 * The query string of a catalogue search: empty values left out, a facet repeated once per
 * selected value (`tasks=A&tasks=B`), facets in a fixed order so equal searches give equal URLs.
 */
export function searchParams(query: Catalog.ISearchQuery): string {
  const params = new URLSearchParams();
  const q = query.q?.trim();
  if (q) {
    params.append('q', q);
  }
  for (const facet of Catalog.FACETS) {
    for (const value of query.filters?.[facet] ?? []) {
      params.append(facet, value);
    }
  }
  if (query.sort && query.sort !== 'relevance') {
    params.append('sort', query.sort);
  }
  if (query.page && query.page > 1) {
    params.append('page', String(query.page));
  }
  if (query.per_page) {
    params.append('per_page', String(query.per_page));
  }
  return params.toString();
}

/** A path segment for a module id (ids are slugs, but never trust that in a URL). */
function moduleEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('catalog', 'modules', encodeURIComponent(id), ...rest);
}

/** A path segment for a deployment id. */
function deploymentEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('deployments', encodeURIComponent(id), ...rest);
}

/** The full address of a deployment's own API (its DEEPaaS root), as code outside the panel calls it. */
export function deploymentURL(
  deployment: Pick<Deployments.IDeployment, 'path'>,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  return URLExt.join(settings.baseUrl, deployment.path);
}

/** Where a deployment's module answers predictions. */
export function predictURL(
  deployment: Pick<Deployments.IDeployment, 'path' | 'entry_point'>,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const model = encodeURIComponent(deployment.entry_point);
  return URLExt.join(deploymentURL(deployment, settings), 'v2', 'models', model, 'predict/');
}


/**
 * Follow a deployment's log: the last `tail` lines, then new lines as they come, until the
 * deployment ends (the promise resolves) or `signal` aborts. Text arrives in pieces that may cut lines.
 */
export async function followLogs(
  id: string,
  onText: (text: string) => void,
  signal: AbortSignal,
  tail = 200,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<void> {
  const url = apiURL(`${deploymentEndpoint(id, 'logs')}?follow=1&tail=${tail}`, settings);
  const response = await fetchOK(url, { signal }, settings);
  if (!response.body) {
    onText(await response.text());
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      onText(decoder.decode(value, { stream: true }));
    }
  } catch (error) {
    if (signal.aborted) {
      throw error;
    }
    throw new ReefLabError('The log stopped coming: the connection to your Jupyter server was lost.', 0);
  }
  const rest = decoder.decode();
  if (rest) {
    onText(rest);
  }
}


/** POST one image (multipart field `files`) to a ready deployment's predict, asking for `accept`. */
async function postImage(
  deployment: Pick<Deployments.IDeployment, 'path' | 'entry_point'>,
  file: File,
  accept: string,
  options: Deployments.PredictOptions,
  signal: AbortSignal | undefined,
  settings: ServerConnection.ISettings
): Promise<Response> {
  const query = new URLSearchParams(Object.entries(options).map(([k, v]) => [k, String(v)])).toString();
  const body = new FormData();
  body.append('files', file, file.name);
  const url = predictURL(deployment, settings) + (query ? `?${query}` : '');
  return fetchOK(url, { method: 'POST', body, signal, headers: { accept } }, settings);
}

/** What a deployment's module finds in one image, as JSON (boxes or classes). */
export async function predictJSON(
  deployment: Pick<Deployments.IDeployment, 'path' | 'entry_point'>,
  file: File,
  options: Deployments.PredictOptions = {},
  signal?: AbortSignal,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<Deployments.IPredictAnswer> {
  const response = await postImage(deployment, file, 'application/json', options, signal, settings);
  try {
    return (await response.json()) as Deployments.IPredictAnswer;
  } catch {
    throw new ReefLabError('The module sent an answer ReefLab cannot read. Look at its log.', response.status);
  }
}

/** The same image with what the module found drawn on it (PNG). */
export async function predictImage(
  deployment: Pick<Deployments.IDeployment, 'path' | 'entry_point'>,
  file: File,
  options: Deployments.PredictOptions = {},
  signal?: AbortSignal,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<Blob> {
  const response = await postImage(deployment, file, 'image/png', options, signal, settings);
  return response.blob();
}


export const api = {
  info: (): Promise<ReefLab.IInfo> => requestAPI<ReefLab.IInfo>('info'),
  profiles: (): Promise<ReefLab.IProfiles> => requestAPI<ReefLab.IProfiles>('profiles'),
  trainingInfo: (settings?: ServerConnection.ISettings): Promise<ReefLab.ITrainingInfo> =>
    requestAPI<ReefLab.ITrainingInfo>('training', {}, settings),

  searchModules: (
    query: Catalog.ISearchQuery,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings
  ): Promise<Catalog.ISearchResult> => {
    const qs = searchParams(query);
    return requestAPI<Catalog.ISearchResult>(`catalog/modules${qs ? `?${qs}` : ''}`, { signal }, settings);
  },
  module: (id: string, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Catalog.IModule> =>
    requestAPI<Catalog.IModule>(moduleEndpoint(id), { signal }, settings),
  moduleForm: (id: string, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Catalog.IForm> =>
    requestAPI<Catalog.IForm>(moduleEndpoint(id, 'form'), { signal }, settings),
  refreshCatalog: (settings?: ServerConnection.ISettings): Promise<Catalog.IRefreshResult> =>
    requestAPI<Catalog.IRefreshResult>('catalog/refresh', { method: 'POST' }, settings),

  deployments: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Deployments.IDeployment[]> =>
    requestAPI<{ deployments: Deployments.IDeployment[] }>('deployments', { signal }, settings).then(
      answer => answer.deployments
    ),
  createDeployment: (
    request: Deployments.IRequest,
    settings?: ServerConnection.ISettings
  ): Promise<Deployments.IDeployment> =>
    requestAPI<Deployments.IDeployment>('deployments', json(request), settings),
  deleteDeployment: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(deploymentEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  /** Start it again, with other hardware within its profile if given (e.g. its suggestion). */
  restartDeployment: (
    id: string,
    hardware?: Partial<Catalog.IHardware>,
    settings?: ServerConnection.ISettings
  ): Promise<Deployments.IDeployment> =>
    requestAPI<Deployments.IDeployment>(
      deploymentEndpoint(id, 'restart'),
      { method: 'POST', body: JSON.stringify(hardware ? { hardware } : {}) },
      settings
    ),
  followLogs,
  predictJSON,
  predictImage,
  // what a module's page offers besides deploying: checking it, training it, making it serverless
  checks: checksApi.checks,
  check: checksApi.check,
  startCheck: checksApi.startCheck,
  checkLog: checksApi.checkLog,
  published: checksApi.published,
  publish: checksApi.publish,
  unpublish: checksApi.unpublish,
  runPipeline: pipelinesApi.runPipeline,
  makeServerless: serverlessApi.makeServerless,
  serverlessAvailability: serverlessApi.serverlessAvailability,
  platformStorage: serverlessApi.platformStorage
};

/** The calls the marketplace makes (deploying included); views take it as a prop so tests can give their own. */
export type MarketplaceAPI = Pick<
  typeof api,
  'searchModules' | 'module' | 'moduleForm' | 'refreshCatalog' | 'createDeployment'
> &
  Partial<
    Pick<
      typeof api,
      | 'info'
      | 'makeServerless'
      | 'serverlessAvailability'
      | 'platformStorage'
      | 'runPipeline'
      | keyof ChecksAPI
      | keyof PublishAPI
    >
  >;

/** The calls the Deployments section makes. */
export type DeploymentsAPI = Pick<
  typeof api,
  'deployments' | 'deleteDeployment' | 'restartDeployment' | 'followLogs' | 'predictJSON' | 'predictImage'
>;
