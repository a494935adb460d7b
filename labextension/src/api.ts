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

/** Call `/reeflab/api/<endpoint>[?query]` under the server's base URL and decode the JSON answer. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  // only the path is joined: URLExt.join normalises like a file path and must not see the query
  const [path, query] = splitQuery(endpoint);
  const url = URLExt.join(settings.baseUrl, 'reeflab', 'api', path) + (query ? `?${query}` : '');
  let response: Response;
  try {
    // 'no-cache' revalidates every time without the `?<timestamp>` cache buster ServerConnection adds
    // for 'no-store', which strict endpoints (the catalogue search) reject as an unknown parameter.
    response = await ServerConnection.makeRequest(url, { cache: 'no-cache', ...init }, settings);
  } catch (error) {
    if (isAbort(error) || init.signal?.aborted) {
      throw error;
    }
    throw new ReefLabError(
      'Could not reach your Jupyter server. Check your connection and reload the page.',
      0
    );
  }
  const text = await response.text();
  let data: { message?: unknown } = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // a proxy's HTML error page, or a truncated answer
    if (response.ok) {
      throw new ReefLabError('The server sent an answer ReefLab cannot read. Try again in a moment.', response.status);
    }
  }
  if (!response.ok) {
    const message = typeof data.message === 'string' ? data.message : undefined;
    throw new ReefLabError(describeError(response.status, message), response.status);
  }
  return data as T;
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
    requestAPI<Catalog.IRefreshResult>('catalog/refresh', { method: 'POST' }, settings)
};

/** The calls the marketplace makes; views take it as a prop so tests can give their own. */
export type MarketplaceAPI = Pick<typeof api, 'searchModules' | 'module' | 'moduleForm' | 'refreshCatalog'>;
