/** A marketplace API in memory, recording each call, with answers the tests can hold back. */
import { vi } from 'vitest';

import { Catalog, Checks, Deployments, MarketplaceAPI, ReefLab, ReefLabError, searchParams } from '../api';
import { deployment } from './fakeDeployments';

export function card(id: string, title: string, extra: Partial<Catalog.ICard> = {}): Catalog.ICard {
  return {
    id,
    title,
    summary: `${title} summary`,
    source: 'builtin',
    valid: true,
    deployable: true,
    updated: '2026-11-23',
    tasks: ['Computer Vision'],
    libraries: ['PyTorch'],
    categories: ['AI4 inference'],
    'data-type': ['Image'],
    tags: [],
    ...extra
  };
}

/** A report of the checks: `failed` names the checks that failed, 'licence' is skipped, the others pass. */
export function checkReport(module: string, failed: string[] = []): Checks.IReport {
  const result = (name: string, title: string): Checks.IResult => {
    const state = failed.includes(name) ? 'failed' : name === 'licence' ? 'skipped' : 'passed';
    return {
      name,
      title,
      state,
      reason: `${title}: ${state}.`,
      details: state === 'failed' ? `${name} said: line 3 is wrong` : '',
      seconds: 0.25
    };
  };
  const results = [
    result('metadata', 'ai4-metadata is valid'),
    result('tests', 'Its tests pass'),
    result('licence', 'A licence is present')
  ];
  return {
    module,
    version: '2.3.0',
    digest: 'f00d',
    source: `/modules/${module}`,
    checked: '2026-12-06T02:40:00+00:00',
    passed: failed.length === 0,
    results
  };
}

export function checkRun(id: string, module: string, extra: Partial<Checks.IRun> = {}): Checks.IRun {
  return {
    id,
    owner: 'ana',
    title: `Check of ${module}`,
    module,
    source: `/modules/${module}`,
    state: 'running',
    reason: null,
    report: null,
    backend: 'local',
    created: '2026-12-06T02:39:00+00:00',
    started_at: '2026-12-06T02:39:01+00:00',
    finished_at: null,
    ...extra
  };
}

export const CATALOGUE = [
  card('image-classifier', 'Image classifier', { tasks: ['Computer Vision', 'Classification'], tags: ['plankton'] }),
  card('yolo-detector', 'YOLO object detector', { tasks: ['Computer Vision', 'Other'] }),
  card('whale-calls', 'Whale call detector', {
    source: 'remote',
    valid: false,
    tasks: ['Classification'],
    'data-type': ['Audio']
  })
];

/**
 * Search the way the server does: words in the title, any value of a facet, every facet; a facet's
 * counts are among the modules matching the words and the *other* facets' filters.
 */
export function answer(query: Catalog.ISearchQuery, catalogue = CATALOGUE): Catalog.ISearchResult {
  const words = (query.q ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  const matching = (except?: Catalog.Facet) =>
    catalogue.filter(
      item =>
        words.every(w => item.title.toLowerCase().includes(w)) &&
        Catalog.FACETS.every(
          f => f === except || !query.filters?.[f]?.length || query.filters[f]!.some(v => item[f].includes(v))
        )
    );
  const matches = matching();
  const facets = {} as Catalog.ISearchResult['facets'];
  for (const facet of Catalog.FACETS) {
    const counts = new Map<string, number>();
    matching(facet).forEach(item => item[facet].forEach(v => counts.set(v, (counts.get(v) ?? 0) + 1)));
    facets[facet] = [...counts].map(([value, count]) => ({ value, count })).sort((a, b) => b.count - a.count);
  }
  const perPage = query.per_page ?? 20;
  const page = query.page ?? 1;
  return {
    total: matches.length,
    page,
    per_page: perPage,
    pages: Math.ceil(matches.length / perPage),
    items: matches.slice((page - 1) * perPage, page * perPage),
    facets
  };
}

interface IHeld {
  query: Catalog.ISearchQuery;
  signal?: AbortSignal;
  release: () => void;
}

export class FakeAPI implements MarketplaceAPI {
  searches: Array<{ query: Catalog.ISearchQuery; signal?: AbortSignal; qs: string }> = [];
  held: IHeld[] = [];
  /** when true, searches wait for `release()` */
  hold = false;
  failNext: ReefLabError | null = null;
  modules = new Map<string, Catalog.IModule>();
  forms = new Map<string, Catalog.IForm>();

  searchModules = vi.fn((query: Catalog.ISearchQuery, signal?: AbortSignal): Promise<Catalog.ISearchResult> => {
    this.searches.push({ query, signal, qs: searchParams(query) });
    const failure = this.failNext;
    this.failNext = null;
    return new Promise((resolve, reject) => {
      const release = () => (failure ? reject(failure) : resolve(answer(query)));
      if (this.hold) {
        this.held.push({ query, signal, release });
      } else {
        release();
      }
    });
  });

  module = vi.fn(async (id: string): Promise<Catalog.IModule> => {
    const found = this.modules.get(id);
    if (!found) {
      throw new ReefLabError(`No module '${id}' in the marketplace; search the catalogue for its id.`, 404);
    }
    return found;
  });

  moduleForm = vi.fn(async (id: string): Promise<Catalog.IForm> => {
    const found = this.forms.get(id);
    if (!found) {
      throw new ReefLabError('The server failed to answer (HTTP 500). Try again in a moment.', 500);
    }
    return found;
  });

  info = vi.fn(
    async (): Promise<ReefLab.IInfo> => ({
      version: '0.1.0',
      user: 'ana',
      groups: [],
      hub: null,
      backends: {},
      deployments: { try_minutes: 10, max_deployments: 5, max_tries: 2, max_gpus: 1 }
    })
  );

  refreshCatalog = vi.fn(async (): Promise<Catalog.IRefreshResult> => ({ modules: 3, invalid: 1, errors: [] }));

  /** the user's check runs, as the server keeps them: a test ends one by changing it here */
  checkRuns: Checks.IRun[] = [];

  checks = vi.fn(async (): Promise<Checks.IRun[]> => this.checkRuns.map(run => ({ ...run })));

  check = vi.fn(async (id: string): Promise<Checks.IRun> => {
    const found = this.checkRuns.find(run => run.id === id);
    if (!found) {
      throw new ReefLabError(`No check '${id}'.`, 404);
    }
    return { ...found };
  });

  startCheck = vi.fn(async (module: string): Promise<Checks.IRun> => {
    const run = checkRun(`check${this.checkRuns.length + 1}`, module, { state: 'starting', started_at: null });
    this.checkRuns.push(run);
    return { ...run };
  });

  checkLog = vi.fn(async (): Promise<string[]> => ['PASS metadata  ai4-metadata is valid (0.1 s)']);

  /** the platform catalogue's publications, as its service keeps them */
  publications: Checks.IPublication[] = [];

  published = vi.fn(async (): Promise<Checks.IPublication[]> => this.publications.map(item => ({ ...item })));

  publish = vi.fn(async (module: string): Promise<Checks.IPublication> => {
    const item = { id: module, publisher: 'ana', published: '2026-12-06T05:00:00+00:00', check: checkReport(module) };
    this.publications.push(item);
    return { ...item };
  });

  unpublish = vi.fn(async (module: string): Promise<void> => {
    this.publications = this.publications.filter(item => item.id !== module);
  });

  /** the server's refusal of the next deployment */
  refuseNext: ReefLabError | null = null;

  createDeployment = vi.fn(async (request: Deployments.IRequest): Promise<Deployments.IDeployment> => {
    const refusal = this.refuseNext;
    this.refuseNext = null;
    if (refusal) {
      throw refusal;
    }
    return deployment({
      id: 'feedbeef',
      module: request.module,
      kind: request.kind,
      title: request.title ?? this.modules.get(request.module)?.title ?? request.module,
      state: 'starting',
      env: Object.keys(request.env ?? {}).sort()
    });
  });
}
