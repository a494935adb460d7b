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

  /** Where your training runs are tracked (GET /reeflab/api/training); the password never comes. */
  export interface ITrainingInfo {
    tracking_uri: string | null;
    account: string | null;
    /** the MLflow UI under your server's base URL */
    ui: string;
  }

  /** What a refresh of the examples did (POST /reeflab/api/examples), paths relative to `folder`. */
  export interface IExamplesReport {
    folder: string;
    added: string[];
    updated: string[];
    /** changed by you: left as they are */
    kept: string[];
    deleted: string[];
  }
}

/** An address under the server's base URL (an output notebook, the MLflow UI). */
export function serverURL(path: string): string {
  return URLExt.join(ServerConnection.makeSettings().baseUrl, path);
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
    /** false: no trained weights (a network built from a yaml), to be trained before it is tried */
    trained?: boolean;
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
    /** parameters of notebooks/retrain.pipeline that train it, when it has no trained weights */
    retrain?: Record<string, string> | null;
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
    /** the most its profile allows */
    limits: Catalog.IHardware | null;
    /** where its hardware is below what the module recommends (allowed) */
    warnings: string[];
    /** after it was stopped for lack of memory: the hardware to restart it with */
    suggestion: Catalog.IHardware | null;
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
    /** detectors: the confidence threshold the boxes passed (the module takes it as `conf`) */
    conf?: number;
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

/** Storage connections, their files and mounts (server_extension/reeflab/storage/models.py). */
export namespace Storage {
  export type Kind = 's3' | 'webdav';
  export type MountState = 'unmounted' | 'mounting' | 'mounted' | 'error';

  export interface IMount {
    state: MountState;
    /** relative to the workspace (the file browser's root), e.g. "storage/cloud" */
    path: string;
    reason: string | null;
  }

  /** A connection as the server shows it: never a secret. */
  export interface IConnection {
    name: string;
    kind: Kind;
    created: string;
    /** the platform's own bucket: cannot be deleted */
    platform: boolean;
    /** where the data is, for people */
    location: string;
    /** what it is, in words: "your bucket ana on the platform" */
    description: string;
    /** S3: the bucket (and folder) its paths are in, e.g. "ana"; null for WebDAV */
    bucket_path: string | null;
    mount: IMount;
    endpoint?: string;
    bucket?: string;
    prefix?: string;
    region?: string;
    access_key?: string;
    url?: string;
    user?: string;
    vendor?: string;
  }

  export interface IS3Request {
    kind: 's3';
    name: string;
    endpoint: string;
    bucket: string;
    prefix?: string;
    region?: string;
    access_key: string;
    secret_key: string;
  }

  export interface IWebDAVRequest {
    kind: 'webdav';
    name: string;
    url: string;
    user: string;
    password: string;
    vendor?: 'owncloud' | 'nextcloud' | 'other';
  }

  export type IRequest = IS3Request | IWebDAVRequest;

  export interface ICapabilities {
    mounts: { available: boolean; reason: string | null };
    mount_folder: string;
  }

  export interface IEntry {
    name: string;
    type: 'file' | 'directory';
    size: number | null;
    modified: string | null;
    path: string;
  }

  export interface IListing {
    connection: string;
    path: string;
    items: IEntry[];
    /** give it back as `page` for the next entries; null at the end */
    next_page: string | null;
  }

  export interface ITestResult {
    ok: boolean;
    seconds: number;
  }
}

/** Notebook jobs (server_extension/reeflab/jobs/models.py) and MLflow runs (training/tracking.py). */
export namespace Jobs {
  export type State = 'starting' | 'running' | 'completed' | 'failed' | 'cancelled';

  export interface IProgress {
    cell: number;
    cells: number;
    source: string;
  }

  export interface IJobError {
    cell_index: number | null;
    execution_count: number | null;
    ename: string;
    evalue: string;
    source: string;
  }

  export interface IJob {
    id: string;
    title: string;
    notebook: string;
    output: string;
    /** under the server's base URL: opens the executed notebook in Lab */
    output_url: string;
    parameters: Record<string, unknown>;
    kernel: string;
    profile: string;
    cpu: number;
    memory_MB: number;
    gpu: number;
    state: State;
    reason: string | null;
    progress: IProgress;
    error: IJobError | null;
    backend: string;
    created: string;
    started_at: string | null;
    finished_at: string | null;
  }

  export interface IRun {
    id: string;
    name: string;
    experiment: string;
    status: string;
    /** ms since the epoch */
    start_time: number | null;
    end_time: number | null;
    params: Record<string, string>;
    metrics: Record<string, number>;
    /** the run in the MLflow UI, under the server's base URL */
    path: string;
  }
}

/** Elyra pipeline runs (server_extension/reeflab/pipelines/models.py): every node a notebook job. */
export namespace Pipelines {
  export type State = Jobs.State;
  export type NodeState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled' | 'skipped';

  /** POST /reeflab/api/pipelines */
  export interface IRequest {
    /** relative to the Jupyter root folder, ending in .pipeline */
    pipeline: string;
    parameters?: Record<string, string>;
    profile?: string;
    title?: string;
  }

  export interface INode {
    id: string;
    label: string;
    filename: string;
    parents: string[];
    state: NodeState;
    reason: string | null;
    progress: Jobs.IProgress;
    error: Jobs.IJobError | null;
    /** the executed notebook, relative to the root folder */
    output: string | null;
    started_at: string | null;
    finished_at: string | null;
  }

  export interface IRun {
    id: string;
    owner: string;
    title: string;
    pipeline: string;
    output: string;
    /** under the server's base URL: the folder of the executed notebooks in Lab */
    output_url: string;
    parameters: Record<string, string>;
    profile: string;
    state: State;
    reason: string | null;
    nodes: INode[];
    backend: string;
    created: string;
    started_at: string | null;
    finished_at: string | null;
  }
}

/** Serverless services on the OSCAR-compatible engine, through /reeflab/api/serverless/. */
export namespace Serverless {
  /** An OSCAR FDL service definition (only what the panel shows). */
  export interface IService {
    name: string;
    image?: string;
    cpu?: string;
    memory?: string;
    environment?: { variables?: Record<string, string> };
    input?: Array<{ storage_provider?: string; path?: string }>;
    output?: Array<{ storage_provider?: string; path?: string }>;
    [key: string]: unknown;
  }

  export type JobStatus = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | string;

  export interface IJob {
    name: string;
    status: JobStatus;
    creation_time: string | null;
    start_time: string | null;
    finish_time: string | null;
    /** ReefLab's: the caller's own name for the input file ('' when none was given) */
    file?: string;
    /** ReefLab's: the uploaded object ('bucket/key') a job made by an upload reads */
    input?: string;
    /** ReefLab's: where a succeeded job's results were written ('bucket/key' each) */
    outputs?: string[];
  }

  /** POST /reeflab/api/serverless/services: a marketplace module as a service. */
  export interface IMakeRequest {
    module: string;
    name?: string;
    /** FDL quantities: "1", "0.5"; "2000M" */
    cpu?: string;
    memory?: string;
    /** storage paths (bucket/folder) whose uploads trigger the service */
    inputs?: string[];
    outputs?: string[];
  }

  export interface IBatchRequest {
    service: string;
    inputs: string;
    output?: string;
  }

  /** A batch run by the user's server (serverless/gateway.py BatchState). */
  export interface IBatch {
    id: string;
    service: string;
    inputs: string;
    output: string;
    status: 'starting' | 'running' | 'succeeded' | 'failed';
    done: number;
    total: number;
    /** the files that failed, with why */
    failed: Array<Record<string, string>>;
    message: string;
    /** seconds since the epoch */
    started: number;
    finished: number | null;
  }

  /** Whether this server has a serverless engine, and why not. */
  export interface IAvailability {
    available: boolean;
    reason: string | null;
  }
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
    case 413:
      return 'The file is too large for your Jupyter server to take in one go. Copy it with a transfer instead.';
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
    requestAPI<Deployments.IDeployment>('deployments', { method: 'POST', body: JSON.stringify(request) }, settings),
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
  makeServerless: (request: Serverless.IMakeRequest, settings?: ServerConnection.ISettings) =>
    serverlessApi.makeServerless(request, settings),
  runPipeline: (request: Pipelines.IRequest, settings?: ServerConnection.ISettings) =>
    pipelinesApi.runPipeline(request, settings),
  serverlessAvailability: (settings?: ServerConnection.ISettings) => serverlessApi.serverlessAvailability(settings),
  platformStorage: (signal?: AbortSignal, settings?: ServerConnection.ISettings) =>
    serverlessApi.platformStorage(signal, settings)
};

/** Call `/reeflab/api/<endpoint>` and give back the answer's text (OSCAR's logs and sync answers are not JSON). */
export async function requestText(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<string> {
  const response = await send(apiURL(endpoint, settings), init, settings);
  const text = await response.text();
  if (!response.ok) {
    throw errorFromBody(response.status, text);
  }
  return text;
}

/** A path under the storage API for one connection. */
function connectionEndpoint(name: string, ...rest: string[]): string {
  return URLExt.join('storage', 'connections', encodeURIComponent(name), ...rest);
}

/** A path under the OSCAR API of the serverless engine, as forwarded by the user's server. */
function oscarEndpoint(...parts: string[]): string {
  return URLExt.join('serverless', 'oscar', ...parts.map(encodeURIComponent));
}

/** A path for one batch of the user's server. */
function batchEndpoint(id: string): string {
  return URLExt.join('serverless', 'batches', encodeURIComponent(id));
}

/** A path for one notebook job. */
function jobEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('jobs', encodeURIComponent(id), ...rest);
}

/** A path for one pipeline run. */
function pipelineEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('pipelines', encodeURIComponent(id), ...rest);
}

/** The address of one file of a connection (`?path=` holds the file's path in it). */
function fileEndpoint(name: string, path: string): string {
  return `${connectionEndpoint(name, 'file')}?${new URLSearchParams({ path })}`;
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

const json = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body) });

/**
 * The Content-Disposition that gives the serverless engine the file's own name (any name: RFC 8187's
 * percent-encoded form), so that the module sees it and answers and errors name it.
 */
export function contentDisposition(name: string): string {
  const encoded = encodeURIComponent(name).replace(/['()*!]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename*=UTF-8''${encoded}`;
}

export const storageApi = {
  storageInfo: (settings?: ServerConnection.ISettings): Promise<Storage.ICapabilities> =>
    requestAPI<Storage.ICapabilities>('storage', {}, settings),
  connections: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Storage.IConnection[]> =>
    requestAPI<{ connections: Storage.IConnection[] }>('storage/connections', { signal }, settings).then(
      answer => answer.connections
    ),
  createConnection: (request: Storage.IRequest, settings?: ServerConnection.ISettings): Promise<Storage.IConnection> =>
    requestAPI<Storage.IConnection>('storage/connections', json(request), settings),
  deleteConnection: (name: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(connectionEndpoint(name), { method: 'DELETE' }, settings).then(() => undefined),
  testConnection: (name: string, settings?: ServerConnection.ISettings): Promise<Storage.ITestResult> =>
    requestAPI<Storage.ITestResult>(connectionEndpoint(name, 'test'), { method: 'POST' }, settings),
  mount: (name: string, settings?: ServerConnection.ISettings): Promise<Storage.IMount> =>
    requestAPI<Storage.IMount>(connectionEndpoint(name, 'mount'), { method: 'POST' }, settings),
  unmount: (name: string, settings?: ServerConnection.ISettings): Promise<Storage.IMount> =>
    requestAPI<Storage.IMount>(connectionEndpoint(name, 'mount'), { method: 'DELETE' }, settings),
  listFiles: (
    name: string,
    path: string,
    page?: string | null,
    signal?: AbortSignal,
    settings?: ServerConnection.ISettings
  ): Promise<Storage.IListing> => {
    const params = new URLSearchParams({ path });
    if (page) {
      params.append('page', page);
    }
    return requestAPI<Storage.IListing>(`${connectionEndpoint(name, 'files')}?${params}`, { signal }, settings);
  },
  /** Make an empty folder at `path` (and those above it); 409 if something is there. */
  makeFolder: (
    name: string,
    path: string,
    settings?: ServerConnection.ISettings
  ): Promise<{ connection: string; path: string }> =>
    requestAPI<{ connection: string; path: string }>(connectionEndpoint(name, 'folders'), json({ path }), settings),
  /** Write a file from the user's computer at `path` (folder and name) in the connection. */
  uploadFile: (
    name: string,
    path: string,
    file: Blob,
    settings?: ServerConnection.ISettings
  ): Promise<{ connection: string; path: string }> =>
    requestAPI<{ connection: string; path: string }>(
      fileEndpoint(name, path),
      { method: 'PUT', body: file, headers: { 'Content-Type': 'application/octet-stream' } },
      settings
    ),
  /** A file's bytes, fetched with the user's credentials (a plain link would not carry the token). */
  downloadFile: async (
    name: string,
    path: string,
    signal?: AbortSignal,
    settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ): Promise<Blob> => {
    const response = await send(apiURL(fileEndpoint(name, path), settings), { signal }, settings);
    if (!response.ok) {
      throw errorFromBody(response.status, await response.text());
    }
    return response.blob();
  }
};

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

export const jobsApi = {
  ...pipelinesApi,
  ...examplesApi,
  jobs: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Jobs.IJob[]> =>
    requestAPI<{ jobs: Jobs.IJob[] }>('jobs', { signal }, settings).then(answer => answer.jobs),
  cancelJob: (id: string, settings?: ServerConnection.ISettings): Promise<Jobs.IJob> =>
    requestAPI<Jobs.IJob>(jobEndpoint(id, 'cancel'), { method: 'POST' }, settings),
  deleteJob: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(jobEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  jobLog: (id: string, tail = 200, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<string[]> =>
    requestAPI<{ lines: string[] }>(`${jobEndpoint(id, 'log')}?tail=${tail}`, { signal }, settings).then(
      answer => answer.lines
    ),
  trainingRuns: (max = 10, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Jobs.IRun[]> =>
    requestAPI<{ runs: Jobs.IRun[] }>(`training/runs?max_results=${max}`, { signal }, settings).then(
      answer => answer.runs
    )
};

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

/** The calls the marketplace makes (deploying included); views take it as a prop so tests can give their own. */
export type MarketplaceAPI = Pick<
  typeof api,
  'searchModules' | 'module' | 'moduleForm' | 'refreshCatalog' | 'createDeployment'
> &
  Partial<Pick<typeof serverlessApi, 'makeServerless' | 'serverlessAvailability' | 'platformStorage'>> &
  Partial<Pick<typeof pipelinesApi, 'runPipeline'>>;

/** The calls the Deployments section makes. */
export type DeploymentsAPI = Pick<
  typeof api,
  'deployments' | 'deleteDeployment' | 'restartDeployment' | 'followLogs' | 'predictJSON' | 'predictImage'
>;

/** The calls the Storage section makes (without upload/download/makeFolder, files are only listed). */
export type StorageAPI = Omit<typeof storageApi, 'uploadFile' | 'downloadFile' | 'makeFolder'> &
  Partial<Pick<typeof storageApi, 'uploadFile' | 'downloadFile' | 'makeFolder'>>;

/** The calls the pipeline runs of the Jobs section make. */
export type PipelinesAPI = typeof pipelinesApi;

/** The calls the Jobs section makes (without the pipeline calls, it shows notebook jobs only). */
export type JobsAPI = Omit<typeof jobsApi, keyof PipelinesAPI | keyof typeof examplesApi> &
  Partial<PipelinesAPI> &
  Partial<typeof examplesApi>;

/** The calls the Serverless section makes. */
export type ServerlessAPI = typeof serverlessApi;
