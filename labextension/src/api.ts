/**
 * The one REST client of the ReefLab panel: every call to /reeflab/api/ goes through here.
 * Types mirror the server's JSON models (server_extension/reeflab/handlers/, catalog/).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export namespace ReefLab {
  export interface IBackends {
    [name: string]: string;
  }

  export interface IInfo {
    version: string;
    user: string;
    groups: string[];
    hub: string | null;
    backends: IBackends;
  }

  export interface IGPU {
    count: number;
    resource: string;
    model: string | null;
  }

  export interface IProfile {
    slug: string;
    display_name: string;
    description: string;
    default: boolean;
    cpu: number;
    memory: string;
    memory_bytes: number;
    gpu: IGPU | null;
    image: string;
  }

  export interface IProfiles {
    default: string | null;
    profiles: IProfile[];
  }
}

/** The marketplace (server_extension/reeflab/catalog/). */
export namespace Catalog {
  /** Facets a user filters on, spelled as the ai4-metadata keys (catalog/models.py FACETS). */
  export const FACETS = ['tasks', 'libraries', 'categories', 'data-type', 'tags'] as const;
  export type Facet = (typeof FACETS)[number];

  export type Sort = 'relevance' | 'title' | 'updated';
  export type Source = 'builtin' | 'installed' | 'remote';

  /** Values selected per facet; a module matches any value of a facet and every facet. */
  export type Filters = Partial<Record<Facet, string[]>>;

  export interface ISearchQuery {
    q?: string;
    filters?: Filters;
    sort?: Sort;
    page?: number;
    per_page?: number;
  }

  /** The short form of a module shown in search results (ModuleEntry.card()). */
  export interface ICard extends Record<Facet, string[]> {
    id: string;
    title: string;
    summary: string;
    source: Source;
    valid: boolean;
    deployable: boolean;
    /** ISO date, '' when unknown */
    updated: string;
  }

  export interface IFacetCount {
    value: string;
    count: number;
  }

  export interface ISearchResult {
    total: number;
    page: number;
    per_page: number;
    /** 0 when nothing matches */
    pages: number;
    items: ICard[];
    facets: Record<Facet, IFacetCount[]>;
  }

  export interface IResources {
    cpu?: number;
    gpu?: number;
    memory_MB?: number;
    gpu_memory_MB?: number;
    [key: string]: unknown;
  }

  /** An ai4-metadata v2 document. Invalid modules may hold anything, so every field is optional. */
  export interface IMetadata {
    metadata_version?: string;
    title?: string;
    summary?: string;
    description?: string;
    links?: Record<string, unknown>;
    resources?: { inference?: IResources; training?: IResources; [key: string]: unknown };
    dates?: { created?: string; updated?: string };
    license?: string;
    [key: string]: unknown;
  }

  export interface IMetadataProblem {
    /** dotted path of the field, '' for the whole document */
    field: string;
    message: string;
  }

  /** Everything known about one module. */
  export interface IModule extends ICard {
    metadata: IMetadata;
    problems: IMetadataProblem[];
    entry_point: string | null;
    versions: string[];
  }

  export interface INeeds {
    cpu: number;
    gpu: number;
    memory_MB: number;
    gpu_memory_MB: number;
  }

  export interface IHardware {
    cpu: number;
    memory_MB: number;
    gpu: number;
  }

  /** One hardware profile the user may give a module. */
  export interface IFormProfile {
    slug: string;
    display_name: string;
    default: boolean;
    fits: boolean;
    /** what the profile lacks, when it does not fit */
    reason: string | null;
    limits: IHardware;
    prefill: IHardware;
    gpu_model: string | null;
    image: string;
  }

  /** The hardware choices for deploying a module, pre-filled from its inference needs. */
  export interface IForm {
    module: string;
    title: string;
    deployable: boolean;
    needs: INeeds;
    profiles: IFormProfile[];
    default: string | null;
    /** why no profile fits, when none does */
    reason: string | null;
  }

  export interface IRefreshResult {
    modules: number;
    invalid: number;
    errors: string[];
  }
}

/** Modules running as services (server_extension/reeflab/deployments/models.py). */
export namespace Deployments {
  export type State = 'queued' | 'starting' | 'ready' | 'failed' | 'stopped';
  export type Kind = 'deployment' | 'try';

  /** POST /reeflab/api/deployments */
  export interface IRequest {
    module: string;
    kind: Kind;
    profile?: string;
    title?: string;
    hardware?: Catalog.IHardware;
    /** name -> value; the values are never sent back */
    env?: Record<string, string>;
  }

  export interface IDeployment {
    id: string;
    owner: string;
    module: string;
    entry_point: string;
    title: string;
    kind: Kind;
    profile: string;
    hardware: Catalog.IHardware;
    /** names only: values may be secrets */
    env: string[];
    state: State;
    /** why it failed or stopped; may be several lines of its log */
    reason: string | null;
    backend: string;
    created: string;
    started_at: string | null;
    ready_at: string | null;
    stopped_at: string | null;
    /** when a try stops by itself (ISO) */
    expires: string | null;
    /** under the server's base URL, e.g. "reeflab/deployments/1a2b3c4d/" */
    path: string;
  }

  export interface IDetection {
    class_id: number;
    label: string;
    confidence: number;
    /** x1, y1, x2, y2 in pixels of the original image */
    box: [number, number, number, number];
  }

  export interface IClassScore {
    class_id: number;
    label: string;
    probability: number;
  }

  /** One image's answer from a module's DEEPaaS predict (detector or classifier). */
  export interface IPrediction {
    file: string;
    width: number;
    height: number;
    time_ms: number;
    detections?: IDetection[];
    classes?: IClassScore[];
  }

  export interface IPredictAnswer {
    status: string;
    predictions: IPrediction;
  }

  /** Predict options as query parameters: conf, iou, imgsz (detectors) or top_k (classifiers). */
  export type PredictOptions = Record<string, string | number>;
}

/** An error answered by the server, with the message it gave (meant for people). */
export class ReefLabError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'ReefLabError';
  }
}

function splitQuery(endpoint: string): [string, string] {
  const at = endpoint.indexOf('?');
  return at < 0 ? [endpoint, ''] : [endpoint.slice(0, at), endpoint.slice(at + 1)];
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

/** Send a request to the Jupyter server; a failed connection becomes a ReefLabError, an abort stays an abort. */
async function send(url: string, init: RequestInit, settings: ServerConnection.ISettings): Promise<Response> {
  try {
    // 'no-cache' revalidates every time without the `?<timestamp>` cache buster ServerConnection adds
    // for 'no-store', which strict endpoints (the catalogue search) reject as an unknown parameter.
    return await ServerConnection.makeRequest(url, { cache: 'no-cache', ...init }, settings);
  } catch (error) {
    if (isAbort(error) || init.signal?.aborted) {
      throw error;
    }
    throw new ReefLabError(describeError(0), 0);
  }
}

/**
 * The words of an error answer: `{"message": ...}` from ReefLab, or DEEPaaS's field errors such as
 * `{"files": ["'x' is not an image ..."]}`; generic words when the body says nothing readable.
 */
export function errorFromBody(status: number, text: string): ReefLabError {
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // a proxy's HTML error page, or a truncated answer
  }
  const messages: string[] = [];
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    const record = data as Record<string, unknown>;
    if (typeof record.message === 'string') {
      messages.push(record.message);
    } else {
      for (const [field, value] of Object.entries(record)) {
        if (field === 'reason') {
          continue; // tornado's HTTP reason phrase ("Bad Request"): no news to people
        }
        const texts = (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === 'string');
        // an uploaded file's problem names the file itself; other fields say which option is wrong
        messages.push(...texts.map(t => (field === 'files' ? t : `${field}: ${t}`)));
      }
    }
  }
  return new ReefLabError(describeError(status, messages.join(' ') || undefined), status);
}

function apiURL(endpoint: string, settings: ServerConnection.ISettings): string {
  // only the path is joined: URLExt.join normalises like a file path and must not see the query
  const [path, query] = splitQuery(endpoint);
  return URLExt.join(settings.baseUrl, 'reeflab', 'api', path) + (query ? `?${query}` : '');
}

/** Call `/reeflab/api/<endpoint>[?query]` under the server's base URL and decode the JSON answer. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const response = await send(apiURL(endpoint, settings), init, settings);
  const text = await response.text();
  if (!response.ok) {
    throw errorFromBody(response.status, text);
  }
  try {
    return (text ? JSON.parse(text) : {}) as T;
  } catch {
    throw new ReefLabError('The server sent an answer ReefLab cannot read. Try again in a moment.', response.status);
  }
}

/** Words a scientist understands for an HTTP failure; the server's own message wins when it gave one. */
export function describeError(status: number, message?: string): string {
  if (message) {
    return message;
  }
  switch (status) {
    case 0:
      return 'Could not reach your Jupyter server. Check your connection and reload the page.';
    case 400:
    case 422:
      return 'The server did not accept this request. Check what you entered and try again.';
    case 401:
    case 403:
      return 'You are not allowed to do this. Try logging in again.';
    case 404:
      return 'This item does not exist (any more).';
    case 502:
    case 503:
    case 504:
      return 'Your Jupyter server is busy or restarting. Try again in a moment.';
    default:
      return `The server failed to answer (HTTP ${status}). Try again in a moment.`;
  }
}

/** The text of any error for people: ReefLab errors carry one, anything else gets a generic sentence. */
export function errorMessage(error: unknown): string {
  if (error instanceof ReefLabError) {
    return error.message;
  }
  return 'Something went wrong in the ReefLab panel. Reload the page and try again.';
}

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
  const response = await send(url, { signal }, settings);
  if (!response.ok) {
    throw errorFromBody(response.status, await response.text());
  }
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
  const response = await send(url, { method: 'POST', body, signal, headers: { accept } }, settings);
  if (!response.ok) {
    throw errorFromBody(response.status, await response.text());
  }
  return response;
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
    requestAPI<Deployments.IDeployment>('deployments', { method: 'POST', body: JSON.stringify(request) }, settings),
  deleteDeployment: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(deploymentEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  restartDeployment: (id: string, settings?: ServerConnection.ISettings): Promise<Deployments.IDeployment> =>
    requestAPI<Deployments.IDeployment>(deploymentEndpoint(id, 'restart'), { method: 'POST' }, settings),
  followLogs,
  predictJSON,
  predictImage
};

/** The calls the marketplace makes (deploying included); views take it as a prop so tests can give their own. */
export type MarketplaceAPI = Pick<
  typeof api,
  'searchModules' | 'module' | 'moduleForm' | 'refreshCatalog' | 'createDeployment'
>;

/** The calls the Deployments section makes. */
export type DeploymentsAPI = Pick<
  typeof api,
  'deployments' | 'deleteDeployment' | 'restartDeployment' | 'followLogs' | 'predictJSON' | 'predictImage'
>;
