import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, it } from 'vitest';

import {
  api,
  Catalog,
  checkReportURL,
  checksApi,
  describeError,
  errorMessage,
  ReefLabError,
  requestAPI,
  searchParams
} from '../api';

const BASE = 'http://localhost:8888/a%40b/';

/** Settings whose fetch records the requests and answers with `reply`. */
function fakeServer(reply: (request: Request) => Response | Promise<Response>) {
  const requests: Request[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: BASE,
    token: 'secret',
    fetch: (input: RequestInfo | URL) => {
      const request = input as Request;
      requests.push(request);
      return Promise.resolve(reply(request));
    }
  });
  return { settings, requests };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

const EMPTY_RESULT: Catalog.ISearchResult = {
  total: 0,
  page: 1,
  per_page: 20,
  pages: 0,
  items: [],
  facets: { tasks: [], libraries: [], categories: [], 'data-type': [], tags: [] }
};

describe('searchParams', () => {
  it('repeats a facet once per value and leaves empty parts out', () => {
    const qs = searchParams({
      q: '  fish detector ',
      filters: { tags: ['fish', 'video'], 'data-type': ['Image'], tasks: [] },
      sort: 'relevance',
      page: 1,
      per_page: 20
    });
    expect(qs).toBe('q=fish+detector&data-type=Image&tags=fish&tags=video&per_page=20');
  });

  it('gives facets in a fixed order, whatever order they were chosen in', () => {
    const a = searchParams({ filters: { tags: ['x'], tasks: ['Classification'] } });
    const b = searchParams({ filters: { tasks: ['Classification'], tags: ['x'] } });
    expect(a).toBe(b);
    expect(a).toBe('tasks=Classification&tags=x');
  });

  it('keeps a non-default sort and later pages, and encodes odd values', () => {
    expect(searchParams({ q: 'a&b=c', sort: 'updated', page: 3 })).toBe('q=a%26b%3Dc&sort=updated&page=3');
    expect(searchParams({})).toBe('');
  });
});

describe('requestAPI and the catalogue calls', () => {
  it('searches under the base URL with repeated facet parameters and no cache buster', async () => {
    const { settings, requests } = fakeServer(() => json(EMPTY_RESULT));
    const query = { q: 'plankton', filters: { tasks: ['Classification', 'Other'] }, per_page: 20 };
    await api.searchModules(query, undefined, settings);
    expect(requests).toHaveLength(1);
    const url = new URL(requests[0].url);
    expect(url.pathname).toBe('/a%40b/reeflab/api/catalog/modules');
    expect(url.searchParams.getAll('tasks')).toEqual(['Classification', 'Other']);
    // the server rejects unknown parameters: ServerConnection's `?<timestamp>` must not be added
    expect([...url.searchParams.keys()].sort()).toEqual(['per_page', 'q', 'tasks', 'tasks']);
    expect(requests[0].headers.get('Authorization')).toBe('token secret');
  });

  it('puts module ids in the path, encoded', async () => {
    const { settings, requests } = fakeServer(() => json({}));
    await api.module('yolo-detector', undefined, settings);
    await api.moduleForm('a b/../c', undefined, settings);
    await api.refreshCatalog(settings);
    expect(requests.map(r => new URL(r.url).pathname)).toEqual([
      '/a%40b/reeflab/api/catalog/modules/yolo-detector',
      '/a%40b/reeflab/api/catalog/modules/a%20b%2F..%2Fc/form',
      '/a%40b/reeflab/api/catalog/refresh'
    ]);
    expect(requests[2].method).toBe('POST');
  });

  it("turns an error answer into a ReefLabError with the server's message", async () => {
    const { settings } = fakeServer(() =>
      json({ message: "No module 'nope' in the marketplace; search the catalogue for its id." }, 404)
    );
    const failure = api.module('nope', undefined, settings);
    await expect(failure).rejects.toBeInstanceOf(ReefLabError);
    await expect(failure).rejects.toMatchObject({
      status: 404,
      message: "No module 'nope' in the marketplace; search the catalogue for its id."
    });
  });

  it('describes an error page that is not JSON in words', async () => {
    const { settings } = fakeServer(() => new Response('<html>Bad Gateway</html>', { status: 502 }));
    await expect(requestAPI('info', {}, settings)).rejects.toMatchObject({
      status: 502,
      message: 'Your Jupyter server is busy or restarting. Try again in a moment.'
    });
  });

  it('says the server cannot be reached when the network fails', async () => {
    const { settings } = fakeServer(() => Promise.reject(new TypeError('Failed to fetch')));
    await expect(requestAPI('info', {}, settings)).rejects.toMatchObject({
      status: 0,
      message: 'Could not reach your Jupyter server. Check your connection and reload the page.'
    });
  });

  it('lets an aborted request fail as an abort, not as a network problem', async () => {
    const controller = new AbortController();
    const { settings } = fakeServer(() => {
      controller.abort();
      return Promise.reject(new DOMException('aborted', 'AbortError'));
    });
    const failure = api.searchModules({}, controller.signal, settings);
    await expect(failure).rejects.not.toBeInstanceOf(ReefLabError);
  });
});

describe('the check calls', () => {
  it('start, list, get, log and delete checks under the base URL; the report page is a link', async () => {
    const { settings, requests } = fakeServer(() => json({ checks: [], lines: ['PASS metadata'] }));
    await checksApi.startCheck('image-classifier', settings);
    await checksApi.checks(undefined, settings);
    await checksApi.check('c/1', undefined, settings);
    expect(await checksApi.checkLog('c1', 50, undefined, settings)).toEqual(['PASS metadata']);
    await checksApi.deleteCheck('c1', settings);
    expect(requests.map(r => `${r.method} ${new URL(r.url).pathname}${new URL(r.url).search}`)).toEqual([
      'POST /a%40b/reeflab/api/checks',
      'GET /a%40b/reeflab/api/checks',
      'GET /a%40b/reeflab/api/checks/c%2F1',
      'GET /a%40b/reeflab/api/checks/c1/log?tail=50',
      'DELETE /a%40b/reeflab/api/checks/c1'
    ]);
    expect(await requests[0].json()).toEqual({ module: 'image-classifier' });
    expect(checkReportURL('c1', settings)).toBe(`${BASE}reeflab/api/checks/c1/report.html`);
  });
});

describe('describeError', () => {
  it("prefers the server's message", () => {
    expect(describeError(400, "'page' must be a whole number, not 'x'")).toBe("'page' must be a whole number, not 'x'");
  });

  it.each([
    [401, 'You are not allowed to do this. Try logging in again.'],
    [403, 'You are not allowed to do this. Try logging in again.'],
    [404, 'This item does not exist (any more).'],
    [422, 'The server did not accept this request. Check what you entered and try again.'],
    [503, 'Your Jupyter server is busy or restarting. Try again in a moment.'],
    [500, 'The server failed to answer (HTTP 500). Try again in a moment.']
  ])('explains HTTP %i without a message', (status, words) => {
    expect(describeError(status)).toBe(words);
  });

  it('never shows a programming error to people', () => {
    expect(errorMessage(new TypeError('x is undefined'))).toBe(
      'Something went wrong in the ReefLab panel. Reload the page and try again.'
    );
    expect(errorMessage(new ReefLabError('Catalogue gone', 404))).toBe('Catalogue gone');
  });
});
