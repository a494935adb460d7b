/** Storage connections (S3, WebDAV): test, mount, browse, upload and download their files. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { apiURL, fetchOK, json, requestAPI } from './transport';
import { Storage } from './types';

/** A path under the storage API for one connection. */
function connectionEndpoint(name: string, ...rest: string[]): string {
  return URLExt.join('storage', 'connections', encodeURIComponent(name), ...rest);
}

/** The address of one file of a connection (`?path=` holds the file's path in it). */
function fileEndpoint(name: string, path: string): string {
  return `${connectionEndpoint(name, 'file')}?${new URLSearchParams({ path })}`;
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
  ): Promise<Blob> => (await fetchOK(apiURL(fileEndpoint(name, path), settings), { signal }, settings)).blob()
};

/** The calls the Storage section makes (without upload/download/makeFolder, files are only listed). */
export type StorageAPI = Omit<typeof storageApi, 'uploadFile' | 'downloadFile' | 'makeFolder'> &
  Partial<Pick<typeof storageApi, 'uploadFile' | 'downloadFile' | 'makeFolder'>>;
