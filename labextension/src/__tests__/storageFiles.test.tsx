/** Upload and download in the Storage section's file browser, against an API in memory. */
import { act } from 'react';
import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { ReefLabError, Storage, StorageAPI } from '../api';
import { FileBrowser, uploadPath } from '../storage';
import { button, click, field, IRendered, render, settle, typeInto } from './render';

function connection(extra: Partial<Storage.IConnection> = {}): Storage.IConnection {
  return {
    name: 'cloud',
    kind: 'webdav',
    created: '2026-11-23T10:00:00+00:00',
    platform: false,
    location: 'https://dav.example.org/cloud',
    description: 'WebDAV folder https://dav.example.org/cloud',
    bucket_path: null,
    mount: { state: 'unmounted', path: 'storage/cloud', reason: null },
    ...extra
  };
}
const platform = connection({ name: 'reeflab', kind: 's3', platform: true, bucket_path: 'ana' });

let view: IRendered | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
  vi.restoreAllMocks();
});

function fakeFiles(): StorageAPI & { files: Map<string, Blob>; folders: Set<string> } {
  const files = new Map<string, Blob>([['surveys/day1.jpg', new Blob(['jpeg'])]]);
  const folders = new Set(['surveys']);
  const folder = (path: string): Storage.IEntry => ({
    name: path.split('/').pop()!,
    type: 'directory',
    size: null,
    modified: null,
    path
  });
  // directly in `path`, not deeper
  const inside = (path: string, p: string) =>
    path ? p.startsWith(`${path}/`) && !p.slice(path.length + 1).includes('/') : !p.includes('/');
  const entry = (path: string): Storage.IEntry => ({
    name: path.split('/').pop()!,
    type: 'file',
    size: files.get(path)!.size,
    modified: null,
    path
  });
  return {
    files,
    folders,
    storageInfo: vi.fn(),
    connections: vi.fn(),
    createConnection: vi.fn(),
    deleteConnection: vi.fn(),
    testConnection: vi.fn(),
    mount: vi.fn(),
    unmount: vi.fn(),
    listFiles: vi.fn(async (_name: string, path: string) => ({
      connection: 'cloud',
      path,
      items: [
        ...[...folders].filter(p => inside(path, p)).map(folder),
        ...[...files.keys()].filter(p => inside(path, p)).map(entry)
      ],
      next_page: null
    })),
    makeFolder: vi.fn(async (name: string, path: string) => {
      if (folders.has(path)) {
        throw new ReefLabError(`${name} already has a folder '${path}': choose another name.`, 409);
      }
      folders.add(path);
      return { connection: name, path };
    }),
    uploadFile: vi.fn(async (name: string, path: string, file: Blob) => {
      if (path.endsWith('.exe')) {
        throw new ReefLabError('The file is too large for your Jupyter server to take in one go.', 413);
      }
      files.set(path, file);
      return { connection: name, path };
    }),
    downloadFile: vi.fn(async (_name: string, path: string) => {
      if (!files.has(path)) {
        throw new ReefLabError(`No file '${path}' in cloud.`, 404);
      }
      return files.get(path)!;
    })
  };
}

async function choose(input: HTMLInputElement, ...files: File[]): Promise<void> {
  Object.defineProperty(input, 'files', { value: files, configurable: true });
  await act(async () => {
    input.dispatchEvent(new Event('change', { bubbles: true }));
  });
}

describe('Storage files', () => {
  it('puts an upload in the folder being browsed', () => {
    expect(uploadPath('', 'a.jpg')).toBe('a.jpg');
    expect(uploadPath('surveys/2026/', 'a.jpg')).toBe('surveys/2026/a.jpg');
  });

  it('uploads into the folder being browsed and downloads a file, with errors in words', async () => {
    const api = fakeFiles();
    const saved: string[] = [];
    // jsdom has no object URLs: the browser test downloads for real
    Object.assign(URL, { createObjectURL: vi.fn(() => 'blob:fake'), revokeObjectURL: vi.fn() });
    vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      saved.push(`${this.download} ${this.href}`);
    });
    view = await render(<FileBrowser api={api} connection={connection()} />);
    await settle();
    await click(button(view.host, 'surveys'));
    await settle();
    const input = view.host.querySelector<HTMLInputElement>('input[aria-label="Files to upload to surveys"]')!;
    await choose(input, new File(['fish'], 'reef.jpg'));
    await settle();
    expect(api.uploadFile).toHaveBeenCalledWith('cloud', 'surveys/reef.jpg', expect.any(File));
    expect(view.host.querySelector('[role="status"]')!.textContent).toBe('Uploaded reef.jpg to surveys.');
    expect(view.host.textContent).toContain('reef.jpg'); // listed again

    await click(view.host.querySelector('[aria-label="Download reef.jpg"]'));
    await settle();
    expect(api.downloadFile).toHaveBeenCalledWith('cloud', 'surveys/reef.jpg');
    expect(saved).toEqual(['reef.jpg blob:fake']);

    await choose(input, new File(['x'], 'big.exe'));
    await settle();
    expect(view.host.querySelector('[role="alert"]')!.textContent).toContain('too large');

    api.files.delete('surveys/day1.jpg');
    await click(view.host.querySelector('[aria-label="Download day1.jpg"]'));
    await settle();
    expect(view.host.querySelector('[role="alert"]')!.textContent).toContain("No file 'surveys/day1.jpg' in cloud.");
  });

  it('makes a folder in the folder being browsed, and says why the server refused one', async () => {
    const api = fakeFiles();
    view = await render(<FileBrowser api={api} connection={platform} />);
    await settle();
    // the platform's connection is browsed as its bucket: the path reads as serverless takes it
    expect(view.host.querySelector('nav')!.textContent).toBe('ana');
    await click(button(view.host, 'surveys'));
    await settle();
    expect(view.host.querySelector('nav')!.textContent).toBe('ana / surveys');
    await click(button(view.host, 'New folder'));
    expect(button(view.host, 'Create')!.disabled).toBe(true); // no name yet
    await typeInto(field(view.host, 'Folder name'), ' 2026-11 ');
    await click(button(view.host, 'Create'));
    await settle();
    expect(api.makeFolder).toHaveBeenCalledWith('reeflab', 'surveys/2026-11');
    expect(view.host.querySelector('[role="status"]')!.textContent).toBe('Made the folder ana/surveys/2026-11.');
    expect(view.host.querySelector('li[data-type="directory"]')!.textContent).toBe('2026-11'); // listed again
    expect(view.host.querySelector('form')).toBeNull();

    await click(button(view.host, 'New folder'));
    await typeInto(field(view.host, 'Folder name'), '2026-11');
    await click(button(view.host, 'Create'));
    await settle();
    expect(view.host.querySelector('[role="alert"]')!.textContent).toContain("already has a folder 'surveys/2026-11'");
    expect(view.host.querySelector('form')).not.toBeNull(); // kept, to change the name
  });

  it('copies the path a service (platform bucket) or a job (other connections) takes', async () => {
    const copied: string[] = [];
    Object.defineProperty(navigator, 'clipboard', {
      value: { writeText: vi.fn(async (text: string) => void copied.push(text)) },
      configurable: true
    });
    view = await render(<FileBrowser api={fakeFiles()} connection={platform} />);
    await settle();
    await click(view.host.querySelector('[aria-label="Copy the path of surveys"]'));
    await settle();
    expect(copied).toEqual(['ana/surveys']);
    expect(view.host.querySelector('[role="status"]')!.textContent).toBe('Copied ana/surveys');
    await click(button(view.host, 'surveys'));
    await settle();
    await click(view.host.querySelector('[aria-label="Copy the path of day1.jpg"]'));
    await click(view.host.querySelector('[aria-label="Copy the path of this folder"]'));
    await settle();
    expect(copied).toEqual(['ana/surveys', 'ana/surveys/day1.jpg', 'ana/surveys']);
    view.unmount();

    view = await render(<FileBrowser api={fakeFiles()} connection={connection()} />);
    await settle();
    const surveys = view.host.querySelector('[aria-label="Copy the path of surveys"]')!;
    expect(surveys.getAttribute('title')).toBe('Copy "cloud:surveys", the path notebook jobs take as input or output');
    await click(surveys);
    await settle();
    expect(copied.at(-1)).toBe('cloud:surveys');
  });

  it('offers none without the calls', async () => {
    const { uploadFile: _u, downloadFile: _d, makeFolder: _m, ...api } = fakeFiles();
    view = await render(<FileBrowser api={api} connection={connection()} />);
    await settle();
    expect(button(view.host, 'Upload here')).toBeUndefined();
    expect(button(view.host, 'New folder')).toBeUndefined();
  });
});
