/**
 * The one REST client of the ReefLab panel: every call to /reeflab/api/ goes through here.
 * Types mirror the server's JSON models (server_extension/reeflab/handlers/).
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

/** An error answered by the server, with the message it gave (meant for people). */
export class ReefLabError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

/** Call `/reeflab/api/<endpoint>` under the server's base URL and decode the JSON answer. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'reeflab', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ReefLabError(
      'Could not reach your Jupyter server. Check your connection and reload the page.',
      0
    );
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new ReefLabError(describeError(response.status, data.message), response.status);
  }
  return data as T;
}

/** Words a scientist understands for an HTTP failure. */
export function describeError(status: number, message?: string): string {
  if (message) {
    return message;
  }
  switch (status) {
    case 401:
    case 403:
      return 'You are not allowed to do this. Try logging in again.';
    case 404:
      return 'This item does not exist (any more).';
    default:
      return `The server failed to answer (HTTP ${status}). Try again in a moment.`;
  }
}

export const api = {
  info: (): Promise<ReefLab.IInfo> => requestAPI<ReefLab.IInfo>('info'),
  profiles: (): Promise<ReefLab.IProfiles> => requestAPI<ReefLab.IProfiles>('profiles')
};
