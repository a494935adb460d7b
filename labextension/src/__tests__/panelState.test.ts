import { describe, expect, it } from 'vitest';

import { Jobs, Serverless } from '../api';
import {
  batchPercent,
  batchWords,
  breadcrumbs,
  connectionProblem,
  decodeAnswer,
  describeFailure,
  describeProgress,
  formatBytes,
  parentPath,
  rootName,
  sortEntries,
  storagePath,
  summarizeAnswer
} from '../panelState';

const b64 = (text: string) => btoa(text);

describe('serverless answers', () => {
  it('decodes a base64 JSON answer and sums up what a detector found', () => {
    const body = JSON.stringify({ predictions: { detections: [{ label: 'fish' }, { label: 'fish' }, { label: 'crab' }] } });
    const answer = decodeAnswer(b64(body));
    expect(answer.kind).toBe('json');
    expect(answer.kind === 'json' && summarizeAnswer(answer.value)).toBe('2 fish, 1 crab found');
  });

  it('recognises a PNG and keeps a non-base64 answer (the script log) as text', () => {
    const png = decodeAnswer(btoa(String.fromCharCode(0x89, 0x50, 0x4e, 0x47, 13, 10)));
    expect(png.kind).toBe('image');
    expect(decodeAnswer('Traceback: model not found!')).toEqual({ kind: 'text', text: 'Traceback: model not found!' });
  });
});

describe('batches', () => {
  const batch = (extra: Partial<Serverless.IBatch>): Serverless.IBatch => ({
    id: 'b1',
    service: 'fish',
    inputs: 'ana/in',
    output: 'ana/out',
    status: 'running',
    done: 3,
    total: 12,
    failed: [],
    message: '',
    started: 0,
    finished: null,
    ...extra
  });
  it('gives a percentage only once the total is known', () => {
    expect(batchPercent(batch({}))).toBe(25);
    expect(batchPercent(batch({ total: 0, status: 'starting' }))).toBeNull();
  });
  it('says where a batch is in words', () => {
    expect(batchWords(batch({ failed: [{ file: 'a.jpg', error: 'x' }] }))).toBe('3 of 12 files, 1 failed');
    expect(batchWords(batch({ status: 'failed', message: 'no such bucket' }))).toBe('no such bucket');
  });
});

describe('storage helpers', () => {
  it('names paths the way services and jobs take them', () => {
    const platform = { name: 'reeflab', platform: true, bucket_path: 'ana' };
    expect(storagePath(platform, 'fish-in/')).toBe('ana/fish-in');
    expect(storagePath(platform, '')).toBe('ana');
    expect(rootName(platform)).toBe('ana');
    const cloud = { name: 'cloud', platform: false, bucket_path: null };
    expect(storagePath(cloud, 'survey/a.jpg')).toBe('cloud:survey/a.jpg');
    // another S3 bucket: jobs name it by its connection (serverless reads the platform's buckets only)
    expect(storagePath({ name: 'lake', platform: false, bucket_path: 'fish/data' }, 'x')).toBe('lake:x');
    expect(rootName(cloud)).toBe('cloud');
  });

  it('splits paths into breadcrumbs and goes up', () => {
    expect(breadcrumbs('a/b/c')).toEqual([
      { name: 'a', path: 'a' },
      { name: 'b', path: 'a/b' },
      { name: 'c', path: 'a/b/c' }
    ]);
    expect(parentPath('a/b/c')).toBe('a/b');
    expect(parentPath('a')).toBe('');
  });
  it('lists folders first and sizes for people', () => {
    const entry = (name: string, type: 'file' | 'directory') => ({ name, type, size: 1, modified: null, path: name });
    expect(sortEntries([entry('b.jpg', 'file'), entry('z', 'directory'), entry('a.jpg', 'file')]).map(e => e.name)).toEqual(
      ['z', 'a.jpg', 'b.jpg']
    );
    expect(formatBytes(1234567)).toBe('1.2 MB');
    expect(formatBytes(12)).toBe('12 B');
  });
  it('says what a new connection lacks before sending it', () => {
    const dav = { kind: 'webdav' as const, name: 'cloud', url: 'https://x.org/dav', user: 'ana', password: 'p' };
    expect(connectionProblem(dav)).toBeNull();
    expect(connectionProblem({ ...dav, name: 'My Cloud' })).toMatch(/^Name: /);
    expect(connectionProblem({ ...dav, url: 'x.org' })).toMatch(/^URL: /);
    expect(connectionProblem({ ...dav, password: '' })).toMatch(/app password/);
  });
});

describe('notebook jobs', () => {
  const job = { progress: { cell: 3, cells: 12, source: 'model.train()' }, error: null, reason: null } as Jobs.IJob;
  it('describes progress and the failing cell', () => {
    expect(describeProgress(job)).toBe('cell 3 of 12: model.train()');
    const failed = {
      ...job,
      error: { cell_index: 4, execution_count: 5, ename: 'ValueError', evalue: 'bad epochs', source: '' }
    };
    expect(describeFailure(failed)).toBe('ValueError in cell 5: bad epochs');
  });
});
