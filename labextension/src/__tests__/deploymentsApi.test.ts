import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, it } from 'vitest';

import { api, Deployments, deploymentURL, errorFromBody, predictURL, ReefLabError } from '../api';
import { deployment } from './fakeDeployments';

const BASE = 'http://localhost:8888/a%40b/';

/**
 * A Request that keeps the body it was given: Node's Request cannot read jsdom's FormData and File
 * (the browser test sends real multipart requests), so the form is checked as the panel built it.
 */
class RecordingRequest extends Request {
  readonly sent: BodyInit | null | undefined;
  constructor(input: RequestInfo | URL, init: RequestInit = {}) {
    const isForm = init.body instanceof FormData;
    super(input, isForm ? { ...init, body: undefined } : init);
    this.sent = init.body;
  }
}

/** Settings whose fetch records the requests and answers with `reply`. */
function fakeServer(reply: (request: Request) => Response | Promise<Response>) {
  const requests: RecordingRequest[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: BASE,
    token: 'secret',
    Request: RecordingRequest,
    fetch: (input: RequestInfo | URL) => {
      const request = input as RecordingRequest;
      requests.push(request);
      return Promise.resolve(reply(request));
    }
  });
  return { settings, requests };
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

const IMAGE = () => new File([new Uint8Array([0xff, 0xd8, 0xff])], 'reef 1.jpg', { type: 'image/jpeg' });

describe('deployment calls', () => {
  it('lists, creates, restarts and deletes under the base URL', async () => {
    const { settings, requests } = fakeServer(request => {
      if (request.method === 'DELETE') {
        return new Response(null, { status: 204 });
      }
      return request.method === 'GET' ? json({ deployments: [deployment()] }) : json(deployment(), 201);
    });
    const request: Deployments.IRequest = {
      module: 'fish-detector',
      kind: 'try',
      profile: 'cpu-small',
      hardware: { cpu: 1, memory_MB: 2000, gpu: 0 },
      env: { SITE: 'reef 4' }
    };
    expect(await api.deployments(undefined, settings)).toEqual([deployment()]);
    expect(await api.createDeployment(request, settings)).toEqual(deployment());
    expect(await api.restartDeployment('1a2b3c4d', undefined, settings)).toEqual(deployment());
    expect(await api.restartDeployment('1a2b3c4d', { memory_MB: 2000 }, settings)).toEqual(deployment());
    await expect(api.deleteDeployment('1a2b3c4d', settings)).resolves.toBeUndefined();
    expect(requests.map(r => `${r.method} ${new URL(r.url).pathname}${new URL(r.url).search}`)).toEqual([
      'GET /a%40b/reeflab/api/deployments',
      'POST /a%40b/reeflab/api/deployments',
      'POST /a%40b/reeflab/api/deployments/1a2b3c4d/restart',
      'POST /a%40b/reeflab/api/deployments/1a2b3c4d/restart',
      'DELETE /a%40b/reeflab/api/deployments/1a2b3c4d'
    ]);
    expect(JSON.parse(await requests[1].text())).toEqual(request);
    expect(JSON.parse(await requests[2].text())).toEqual({});
    expect(JSON.parse(await requests[3].text())).toEqual({ hardware: { memory_MB: 2000 } });
  });

  it("shows the server's reason for refusing a deployment", async () => {
    const { settings } = fakeServer(() =>
      json({ message: "Hardware beyond profile 'cpu-small': cpu 3 > 2.", reason: 'Bad Request' }, 400)
    );
    await expect(api.createDeployment({ module: 'x', kind: 'deployment' }, settings)).rejects.toMatchObject({
      status: 400,
      message: "Hardware beyond profile 'cpu-small': cpu 3 > 2."
    });
  });

  it('builds the addresses people call from code, base URL included', () => {
    const settings = ServerConnection.makeSettings({ baseUrl: BASE });
    expect(deploymentURL(deployment(), settings)).toBe('http://localhost:8888/a%40b/reeflab/deployments/1a2b3c4d/');
    expect(predictURL(deployment(), settings)).toBe(
      'http://localhost:8888/a%40b/reeflab/deployments/1a2b3c4d/v2/models/fish-detector/predict/'
    );
  });
});

describe('predict', () => {
  it('posts the image as the multipart field "files", asking for JSON, with options in the query', async () => {
    const answer = {
      status: 'OK',
      predictions: { file: 'reef 1.jpg', width: 4, height: 3, time_ms: 5, detections: [] }
    };
    const { settings, requests } = fakeServer(() => json(answer));
    expect(await api.predictJSON(deployment(), IMAGE(), { conf: 0.4 }, undefined, settings)).toEqual(answer);
    const request = requests[0];
    const url = new URL(request.url);
    expect(request.method).toBe('POST');
    expect(url.pathname).toBe('/a%40b/reeflab/deployments/1a2b3c4d/v2/models/fish-detector/predict/');
    expect(url.search).toBe('?conf=0.4');
    expect(request.headers.get('accept')).toBe('application/json');
    const form = request.sent as FormData;
    expect([...form.keys()]).toEqual(['files']);
    const sent = form.get('files') as File;
    expect(sent.name).toBe('reef 1.jpg');
    expect(sent.size).toBe(3);
  });

  it('gets the annotated image as a PNG', async () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47]);
    const { settings, requests } = fakeServer(() => new Response(png, { headers: { 'Content-Type': 'image/png' } }));
    const blob = await api.predictImage(deployment(), IMAGE(), {}, undefined, settings);
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(png);
    expect(requests[0].headers.get('accept')).toBe('image/png');
    expect(new URL(requests[0].url).search).toBe('');
  });

  it("says why the module refused a file, in the module's words", async () => {
    const { settings } = fakeServer(() =>
      json({ files: ["'notes.txt' is not an image this model can read; send a JPEG, PNG, TIFF or BMP"] }, 422)
    );
    await expect(api.predictJSON(deployment(), IMAGE(), {}, undefined, settings)).rejects.toMatchObject({
      status: 422,
      message: "'notes.txt' is not an image this model can read; send a JPEG, PNG, TIFF or BMP"
    });
  });
});

describe('errorFromBody', () => {
  it.each([
    ['{"message": "Deployment 1a2b3c4d is starting, not ready"}', 409, 'Deployment 1a2b3c4d is starting, not ready'],
    ['{"conf": ["Must be between 0 and 1."]}', 422, 'conf: Must be between 0 and 1.'],
    ['{"reason": "Bad Request"}', 400, 'The server did not accept this request. Check what you entered and try again.'],
    ['<html>Bad Gateway</html>', 502, 'Your Jupyter server is busy or restarting. Try again in a moment.'],
    ['', 500, 'The server failed to answer (HTTP 500). Try again in a moment.']
  ])('reads %s (HTTP %i)', (body, status, words) => {
    const error = errorFromBody(status, body);
    expect(error).toBeInstanceOf(ReefLabError);
    expect(error.message).toBe(words);
  });
});

describe('followLogs', () => {
  function streamed(chunks: string[]) {
    const encoder = new TextEncoder();
    return new ReadableStream<Uint8Array>({
      start(controller) {
        chunks.forEach(chunk => controller.enqueue(encoder.encode(chunk)));
        controller.close();
      }
    });
  }

  it('streams the text of the log until the server ends it', async () => {
    const { settings, requests } = fakeServer(
      () => new Response(streamed(['first li', 'ne\nsecond line\n', 'Ready é\n']), { status: 200 })
    );
    const pieces: string[] = [];
    await api.followLogs('1a2b3c4d', text => pieces.push(text), new AbortController().signal, 200, settings);
    expect(pieces.join('')).toBe('first line\nsecond line\nReady é\n');
    const url = new URL(requests[0].url);
    expect(url.pathname).toBe('/a%40b/reeflab/api/deployments/1a2b3c4d/logs');
    expect(url.search).toBe('?follow=1&tail=200');
  });

  it('says so when the deployment is gone', async () => {
    const { settings } = fakeServer(() => json({ message: "No deployment '1a2b3c4d'" }, 404));
    await expect(
      api.followLogs('1a2b3c4d', () => undefined, new AbortController().signal, 200, settings)
    ).rejects.toMatchObject({ status: 404, message: "No deployment '1a2b3c4d'" });
  });

  it('tells a lost connection apart from closing the viewer', async () => {
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(new TypeError('network error'));
      }
    });
    const { settings } = fakeServer(() => new Response(broken));
    await expect(
      api.followLogs('1a2b3c4d', () => undefined, new AbortController().signal, 200, settings)
    ).rejects.toMatchObject({ status: 0, message: expect.stringContaining('connection') });
  });
});
