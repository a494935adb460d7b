/** Pure helpers of the Storage, Serverless and Jobs sections: words, sizes, paths, progress, answers. */
import { Jobs, Serverless, Storage } from './api';

/** Fast polling while something changes, slow otherwise. */
export const FAST_MS = 2000;
export const SLOW_MS = 15000;

/** "1.2 MB": sizes for people. */
export function formatBytes(size: number | null | undefined): string {
  if (size === null || size === undefined) {
    return '';
  }
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = size;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The folders of a path, each with the path to open it: "" is the connection's root. */
export function breadcrumbs(path: string): Array<{ name: string; path: string }> {
  const parts = path.split('/').filter(Boolean);
  return parts.map((name, i) => ({ name, path: parts.slice(0, i + 1).join('/') }));
}

/** The folder above `path` ("" for the root). */
export function parentPath(path: string): string {
  const parts = path.split('/').filter(Boolean);
  return parts.slice(0, -1).join('/');
}

type Named = Pick<Storage.IConnection, 'name' | 'platform' | 'bucket_path'>;

/**
 * How the rest of the platform names `path` of a connection: "ana/fish-in" in the platform's own
 * bucket (what serverless services take as input or output), else "cloud:survey" (notebook jobs).
 */
export function storagePath(connection: Named, path: string): string {
  const clean = path.split('/').filter(Boolean).join('/');
  if (connection.platform && connection.bucket_path) {
    return [connection.bucket_path, clean].filter(Boolean).join('/');
  }
  return `${connection.name}:${clean}`;
}

/** What the path is for, said on the copy button. */
export function storagePathUse(connection: Named): string {
  return connection.platform && connection.bucket_path
    ? 'the path serverless services take as input or output'
    : 'the path notebook jobs take as input or output';
}

/** The file browser's top folder: the platform's bucket (its paths start with it), else the connection. */
export function rootName(connection: Named): string {
  return connection.platform && connection.bucket_path ? connection.bucket_path : connection.name;
}

/** Folders first, then files, each by name. */
export function sortEntries(items: Storage.IEntry[]): Storage.IEntry[] {
  return [...items].sort((a, b) =>
    a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'directory' ? -1 : 1
  );
}

export const MOUNT_WORDS: Record<Storage.MountState, string> = {
  unmounted: 'not mounted',
  mounting: 'mounting…',
  mounted: 'mounted',
  error: 'mount failed'
};

/** Poll connections fast while a mount is on its way. */
export function storageInterval(list: Storage.IConnection[] | null): number | null {
  return list?.some(c => c.mount.state === 'mounting') ? FAST_MS : SLOW_MS * 2;
}

/** What the add-connection form lacks, in words; null when it can be sent. */
export function connectionProblem(request: Storage.IRequest): string | null {
  if (!/^[a-z][a-z0-9_-]{0,31}$/.test(request.name)) {
    return 'Name: 1-32 lowercase letters, digits, "-" or "_", starting with a letter.';
  }
  const url = request.kind === 's3' ? request.endpoint : request.url;
  if (!/^https?:\/\/[^/\s]+/.test(url)) {
    return request.kind === 's3'
      ? 'Endpoint: the S3 server address, e.g. https://s3.example.org'
      : 'URL: the WebDAV folder, e.g. https://cloud.example.org/remote.php/dav/files/ana';
  }
  if (request.kind === 's3') {
    if (!request.bucket) {
      return 'Bucket: the name of the bucket.';
    }
    if (!request.access_key || !request.secret_key) {
      return 'Give the access key and the secret key.';
    }
  } else if (!request.user || !request.password) {
    return 'Give the user and an app password.';
  }
  return null;
}

// -- serverless -------------------------------------------------------------

export type Answer =
  | { kind: 'json'; value: unknown; text: string }
  | { kind: 'image'; mime: string; bytes: Uint8Array<ArrayBuffer> }
  | { kind: 'text'; text: string };

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

/**
 * A sync invocation's answer: OSCAR sends base64 of the output file; it may be JSON, an image, or text.
 * An answer that is not base64 is the script's own log (kept as text).
 */
export function decodeAnswer(body: string): Answer {
  const trimmed = body.trim();
  let bytes: Uint8Array<ArrayBuffer> | null = null;
  if (trimmed && /^[A-Za-z0-9+/\r\n]+=*$/.test(trimmed)) {
    try {
      const binary = atob(trimmed.replace(/\s+/g, ''));
      bytes = Uint8Array.from(binary, c => c.charCodeAt(0));
    } catch {
      bytes = null;
    }
  }
  if (!bytes) {
    return { kind: 'text', text: body };
  }
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47])) {
    return { kind: 'image', mime: 'image/png', bytes };
  }
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) {
    return { kind: 'image', mime: 'image/jpeg', bytes };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return { kind: 'text', text: `${bytes.length} bytes of binary output` };
  }
  try {
    return { kind: 'json', value: JSON.parse(text), text: JSON.stringify(JSON.parse(text), null, 2) };
  } catch {
    return { kind: 'text', text };
  }
}

/** "5 fish (0.91, 0.88 …)" style summary of a detector's JSON, else null. */
export function summarizeAnswer(value: unknown): string | null {
  const record = value && typeof value === 'object' ? (value as Record<string, unknown>) : null;
  const predictions = record?.predictions ?? value;
  const first = Array.isArray(predictions) ? predictions[0] : predictions;
  const detections = (first as { detections?: unknown[] } | null)?.detections;
  if (Array.isArray(detections)) {
    const labels = new Map<string, number>();
    for (const d of detections as Array<{ label?: string }>) {
      labels.set(d.label ?? 'object', (labels.get(d.label ?? 'object') ?? 0) + 1);
    }
    return detections.length
      ? [...labels].map(([label, n]) => `${n} ${label}`).join(', ') + ' found'
      : 'Nothing found';
  }
  return null;
}

export const JOB_WORDS: Record<string, string> = {
  Pending: 'waiting',
  Running: 'running',
  Succeeded: 'done',
  Failed: 'failed'
};

/** Newest first by creation time. */
export function newestJobs(jobs: Serverless.IJob[]): Serverless.IJob[] {
  return [...jobs].sort((a, b) => (b.creation_time ?? '').localeCompare(a.creation_time ?? ''));
}

/** 0-100 for a progress bar, null while the total is unknown. */
export function batchPercent(batch: Serverless.IBatch): number | null {
  return batch.total > 0 ? Math.min(100, Math.round((100 * batch.done) / batch.total)) : null;
}

export function batchActive(batch: Serverless.IBatch): boolean {
  return batch.status === 'starting' || batch.status === 'running';
}

export function batchWords(batch: Serverless.IBatch): string {
  const failed = batch.failed.length ? `, ${batch.failed.length} failed` : '';
  switch (batch.status) {
    case 'starting':
      return 'Listing the input files…';
    case 'running':
      return `${batch.done} of ${batch.total || '?'} files${failed}`;
    case 'succeeded':
      return batch.message || `${batch.done} of ${batch.total} files done`;
    default:
      return batch.message || `Failed after ${batch.done} of ${batch.total} files${failed}`;
  }
}

export function batchInterval(batches: Serverless.IBatch[] | null): number | null {
  return batches?.some(batchActive) ? 1000 : SLOW_MS;
}

// -- notebook jobs -----------------------------------------------------------

export const JOB_STATE_WORDS: Record<Jobs.State, string> = {
  starting: 'starting',
  running: 'running',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled'
};

export function jobActive(job: Jobs.IJob): boolean {
  return job.state === 'starting' || job.state === 'running';
}

export function jobsInterval(jobs: Jobs.IJob[] | null): number | null {
  return jobs?.some(jobActive) ? FAST_MS : SLOW_MS;
}

/** "cell 3 of 12: model.train(...)" while it runs. */
export function describeProgress(job: Jobs.IJob): string {
  const { cell, cells, source } = job.progress;
  if (!cells) {
    return '';
  }
  return `cell ${cell} of ${cells}${source ? `: ${source}` : ''}`;
}

/** What a failed job raised, in one line. */
export function describeFailure(job: Jobs.IJob): string | null {
  if (job.error) {
    const where = job.error.cell_index !== null ? ` in cell ${job.error.cell_index + 1}` : '';
    const rank = typeof job.failed_rank === 'number' ? `Rank ${job.failed_rank}: ` : '';
    return `${rank}${job.error.ename}${where}: ${job.error.evalue}`;
  }
  return job.reason; // a distributed job's names the rank
}

/** A distributed job's ranks in all (processes on each node × nodes); 0: not a distributed one. */
export function rankCount(job: Jobs.IJob): number {
  return job.processes ? job.processes * (job.nodes ?? 1) : 0;
}

export function newestFirstByCreated<T extends { created: string }>(items: T[]): T[] {
  return [...items].sort((a, b) => b.created.localeCompare(a.created));
}
