/** What the Deployments section decides without React: how often to look, ages, countdowns, logs, findings. */
import { Deployments } from './api';
import { describeHardware } from './marketplaceState';

/** Look this often while something is on its way up (queued or starting)... */
export const POLL_BUSY_MS = 2000;
/** ...and this often otherwise: a ready module may still fail, a try may end. */
export const POLL_IDLE_MS = 15000;

const BUSY: Deployments.State[] = ['queued', 'starting'];
const ACTIVE: Deployments.State[] = ['queued', 'starting', 'ready'];

export function isActive(deployment: Deployments.IDeployment): boolean {
  return ACTIVE.includes(deployment.state);
}

function expiresAt(deployment: Deployments.IDeployment): number | null {
  return deployment.kind === 'try' && deployment.expires ? Date.parse(deployment.expires) : null;
}

/**
 * How long to wait before asking for the list again; null: do not ask (the panel is hidden).
 * Fast while a deployment is starting, or a try is past its end and about to be stopped.
 */
export function pollInterval(list: Deployments.IDeployment[] | null, visible: boolean, now: number): number | null {
  if (!visible) {
    return null;
  }
  const busy = (list ?? []).some(d => {
    const end = expiresAt(d);
    return BUSY.includes(d.state) || (isActive(d) && end !== null && end <= now);
  });
  return busy ? POLL_BUSY_MS : POLL_IDLE_MS;
}

/** How often the clock on screen must move: every second while a try counts down, else twice a minute. */
export function tickInterval(list: Deployments.IDeployment[] | null): number {
  return (list ?? []).some(d => isActive(d) && expiresAt(d) !== null) ? 1000 : 30000;
}

/** "just now", "5 min ago", "3 h ago", "2 days ago". */
export function describeAge(iso: string, now: number): string {
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) {
    return 'just now';
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)} min ago`;
  }
  if (seconds < 86400) {
    return `${Math.floor(seconds / 3600)} h ago`;
  }
  const days = Math.floor(seconds / 86400);
  return `${days} day${days === 1 ? '' : 's'} ago`;
}

const two = (n: number) => String(n).padStart(2, '0');

/** Time left of a try: "9:05 left", "1:02:03 left", "ending…" once it is up; null when it never ends. */
export function countdown(deployment: Deployments.IDeployment, now: number): string | null {
  const end = expiresAt(deployment);
  if (end === null || !isActive(deployment)) {
    return null;
  }
  const left = Math.ceil((end - now) / 1000);
  if (left <= 0) {
    return 'ending…';
  }
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = left % 60;
  return `${h ? `${h}:${two(m)}` : m}:${two(s)} left`;
}

/** Each state in words, with what it means for the user. */
export const STATE_WORDS: Record<Deployments.State, { label: string; hint: string }> = {
  queued: { label: 'waiting', hint: 'Waiting for hardware to become free' },
  starting: { label: 'starting', hint: 'Starting: loading the model' },
  ready: { label: 'ready', hint: 'Ready: it answers requests' },
  failed: { label: 'failed', hint: 'It stopped with an error; see why below, restart or delete it' },
  stopped: { label: 'stopped', hint: 'It no longer runs; restart or delete it' }
};

/** "1 CPU · 2 GB on cpu-small". */
export function describeDeploymentHardware(deployment: Deployments.IDeployment): string {
  return `${describeHardware(deployment.hardware)} on ${deployment.profile}`;
}

/** The section's heading when folded: "2 ready · 1 starting". */
export function summarize(list: Deployments.IDeployment[] | null): string | undefined {
  if (!list?.length) {
    return undefined;
  }
  const counts = new Map<string, number>();
  for (const d of list) {
    const label = STATE_WORDS[d.state].label;
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  return [...counts].map(([label, n]) => `${n} ${label}`).join(' · ');
}

/** Newest first: what was just started is at the top. */
export function newestFirst(list: Deployments.IDeployment[]): Deployments.IDeployment[] {
  return [...list].sort((a, b) => Date.parse(b.created) - Date.parse(a.created));
}

/** The list with `deployment` replaced, or added when new. */
export function upsert(list: Deployments.IDeployment[] | null, deployment: Deployments.IDeployment) {
  const rest = (list ?? []).filter(d => d.id !== deployment.id);
  return [deployment, ...rest];
}

export interface ILogBuffer {
  lines: string[];
  /** the start of a line whose end has not come yet */
  partial: string;
}

/** Add streamed text to a log, keeping its last `max` complete lines. */
export function appendLog(buffer: ILogBuffer, text: string, max = 2000): ILogBuffer {
  const parts = (buffer.partial + text).split('\n');
  const partial = parts.pop() ?? '';
  const lines = buffer.lines.concat(parts);
  return { lines: lines.length > max ? lines.slice(lines.length - max) : lines, partial };
}

/** 0.8734 -> "87 %"; small values keep a decimal: 0.0123 -> "1.2 %". */
export function formatPercent(value: number): string {
  const percent = value * 100;
  return `${percent < 10 ? Number(percent.toFixed(1)) : Math.round(percent)} %`;
}

/** A box as corners in pixels: "(12, 30) – (140, 200)". */
export function formatBox(box: number[]): string {
  const [x1, y1, x2, y2] = box.map(v => Math.round(v));
  return `(${x1}, ${y1}) – (${x2}, ${y2})`;
}

/** One sentence about an answer: "3 objects: 2 fish, 1 crab", "No objects found", "Most likely: coral (87 %)". */
export function describeFindings(prediction: Deployments.IPrediction): string {
  if (prediction.detections) {
    const found = prediction.detections;
    if (!found.length) {
      return 'No objects found in this image.';
    }
    const counts = new Map<string, number>();
    found.forEach(d => counts.set(d.label, (counts.get(d.label) ?? 0) + 1));
    const parts = [...counts].sort((a, b) => b[1] - a[1]).map(([label, n]) => `${n} ${label}`);
    return `${found.length} object${found.length === 1 ? '' : 's'} found: ${parts.join(', ')}.`;
  }
  const best = prediction.classes?.[0];
  if (!best) {
    return 'The module found nothing to report.';
  }
  return `Most likely: ${best.label} (${formatPercent(best.probability)}).`;
}
