/** Upload and download in the Storage section's file browser, against an API in memory. */
import { act } from 'react';
import * as React from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { ReefLabError, Storage, StorageAPI } from '../api';
import { FileBrowser, uploadPath } from '../storage';
import { button, click, IRendered, render, settle } from './render';

let view: IRendered | null = null;
afterEach(() => {
  view?.unmount();
  view = null;
  vi.restoreAllMocks();
});

function fakeFiles(): StorageAPI & { files: Map<string, Blob> } {
  const files = new Map<string, Blob>([['surveys/day1.jpg', new Blob(['jpeg'])]]);
  const entry = (path: string): Storage.IEntry => ({
    name: path.split('/').pop()!,
    type: 'file',
    size: files.get(path)!.size,
    modified: null,
    path
  });
  return {
    files,
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
      items:
        path === ''
          ? [{ name: 'surveys', type: 'directory' as const, size: null, modified: null, path: 'surveys' }]
          : [...files.keys()].filter(p => p.startsWith(`${path}/`)).map(entry),
      next_page: null
    })),
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
    view = await render(<FileBrowser api={api} connection="cloud" />);
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

  it('offers neither without the calls', async () => {
    const { uploadFile: _u, downloadFile: _d, ...api } = fakeFiles();
    view = await render(<FileBrowser api={api} connection="cloud" />);
    await settle();
    expect(button(view.host, 'Upload here')).toBeUndefined();
  });
});
