/** A module's quality checks: start a check, follow it, read its report (JSON, or the readable page). */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { apiURL, json, requestAPI } from './transport';
import { Checks } from './types';

/** A path for one check run (or a shared report, by its name). */
function checkEndpoint(id: string, ...rest: string[]): string {
  return URLExt.join('checks', encodeURIComponent(id), ...rest);
}

/** The readable page of a report (a badge's `report`), to open in a new tab. */
export function checkReportURL(
  report: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  return apiURL(checkEndpoint(report, 'report.html'), settings);
}

export const checksApi = {
  checks: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Checks.IRun[]> =>
    requestAPI<{ checks: Checks.IRun[] }>('checks', { signal }, settings).then(answer => answer.checks),
  check: (id: string, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Checks.IRun> =>
    requestAPI<Checks.IRun>(checkEndpoint(id), { signal }, settings),
  startCheck: (module: string, settings?: ServerConnection.ISettings): Promise<Checks.IRun> =>
    requestAPI<Checks.IRun>('checks', json({ module } satisfies Checks.IRequest), settings),
  deleteCheck: (id: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(checkEndpoint(id), { method: 'DELETE' }, settings).then(() => undefined),
  checkLog: (id: string, tail = 200, signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<string[]> =>
    requestAPI<{ lines: string[] }>(`${checkEndpoint(id, 'log')}?tail=${tail}`, { signal }, settings).then(
      answer => answer.lines
    ),
  published: (signal?: AbortSignal, settings?: ServerConnection.ISettings): Promise<Checks.IPublication[]> =>
    requestAPI<{ modules: Checks.IPublication[] }>('catalog/published', { signal }, settings).then(
      answer => answer.modules
    ),
  publish: (module: string, settings?: ServerConnection.ISettings): Promise<Checks.IPublication> =>
    requestAPI<Checks.IPublication>('catalog/published', json({ module }), settings),
  unpublish: (module: string, settings?: ServerConnection.ISettings): Promise<void> =>
    requestAPI<unknown>(
      URLExt.join('catalog/published', encodeURIComponent(module)),
      { method: 'DELETE' },
      settings
    ).then(() => undefined)
};

/** The calls a module's page makes to check it. */
export type ChecksAPI = Pick<typeof checksApi, 'checks' | 'check' | 'startCheck' | 'checkLog'>;
/** The calls that share a checked module through the platform's catalogue. */
export type PublishAPI = Pick<typeof checksApi, 'published' | 'publish' | 'unpublish'>;
