/**
 * How the panel talks to its Jupyter server: every call to /reeflab/api/ goes through here, and every
 * failure becomes a ReefLabError with words meant for people.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An address under the server's base URL (an output notebook, the MLflow UI). */
export function serverURL(path: string): string {
  return URLExt.join(ServerConnection.makeSettings().baseUrl, path);
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

/** The address of `/reeflab/api/<endpoint>[?query]` under the server's base URL. */
export function apiURL(endpoint: string, settings: ServerConnection.ISettings): string {
  // only the path is joined: URLExt.join normalises like a file path and must not see the query
  const [path, query] = splitQuery(endpoint);
  return URLExt.join(settings.baseUrl, 'reeflab', 'api', path) + (query ? `?${query}` : '');
}

/** Send a request and give back the answer when it is a success; an error answer becomes a ReefLabError. */
export async function fetchOK(
  url: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<Response> {
  const response = await send(url, init, settings);
  if (!response.ok) {
    throw errorFromBody(response.status, await response.text());
  }
  return response;
}

/** Call `/reeflab/api/<endpoint>[?query]` under the server's base URL and decode the JSON answer. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const response = await fetchOK(apiURL(endpoint, settings), init, settings);
  const text = await response.text();
  try {
    return (text ? JSON.parse(text) : {}) as T;
  } catch {
    throw new ReefLabError('The server sent an answer ReefLab cannot read. Try again in a moment.', response.status);
  }
}

/** Call `/reeflab/api/<endpoint>` and give back the answer's text (OSCAR's logs and sync answers are not JSON). */
export async function requestText(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<string> {
  return (await fetchOK(apiURL(endpoint, settings), init, settings)).text();
}

/** A POST with a JSON body. */
export const json = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body) });

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
