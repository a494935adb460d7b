/** The Platform section, for hub admins: the platform's free CPU, memory and GPUs, what each user runs and their
 * servers, and each user's usage over the last day or week (CPU-hours a bar per bucket, with the requests). The
 * server answers others 403: for them the section is absent. Asked only while the panel shows it open. */
import * as React from 'react';

import { ReefLabError } from './api';
import { Platform, PlatformAPI } from './api/platform';
import { BarsPlot } from './monitoringView';
import { ErrorNotice, Loading } from './notice';
import { Section } from './section';
import { usePolled } from './usePolled';

const STATUS_MS = 30000;
const USAGE_MS = 60000;
const PERIODS = [
  { label: 'Last day', since: 86400, step: 3600 },
  { label: 'Last week', since: 7 * 86400, step: 6 * 3600 }
];

type Answer = { refused: true } | { refused: false; status: Platform.IStatus };

/** Hours with two significant figures (0.00083 CPU-h: a few seconds of one CPU). */
export function hours(h: number): string {
  return h === 0 ? '0' : h < 10 ? h.toPrecision(2) : h.toFixed(0);
}

function gb(mb: number): string {
  return `${(mb / 1000).toFixed(1)} GB`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function gpuFree(g: Platform.IMachine['gpus'][number]): string {
  return `GPU ${g.index} (${g.name}): ${gb(g.memory_MB.free)} of ${gb(g.memory_MB.total)} free`;
}

function FreeCapacity(props: { status: Platform.IStatus }): JSX.Element {
  const { machine, cluster } = props.status;
  if (cluster) {
    const { free, allocatable } = cluster;
    return (
      <div aria-label="Free capacity">
        Free in the cluster: <strong>{free.cpu}</strong> of {allocatable.cpu} CPUs ·{' '}
        <strong>{gb(free.memory_MB)}</strong> of {gb(allocatable.memory_MB)} memory · <strong>{free.gpu}</strong> of{' '}
        {plural(allocatable.gpu, 'GPU')}
      </div>
    );
  }
  if (!machine) {
    return <div className="jp-ReefLab-muted">The usage service did not say what is free.</div>;
  }
  return (
    <div aria-label="Free capacity">
      Free now: <strong>{machine.cpu.free}</strong> of {machine.cpu.count} CPUs idle ·{' '}
      <strong>{gb(machine.memory_MB.available)}</strong> of {gb(machine.memory_MB.total)} memory ·{' '}
      {machine.gpus.length === 0 ? 'no GPUs' : machine.gpus.map(gpuFree).join(', ')}
    </div>
  );
}

/** What a user runs: their servers and, by kind, their running things (local mode) or pods (kubernetes). */
function Running(props: { entry?: Platform.IUserStatus }): JSX.Element {
  const entry = props.entry;
  if (!entry) {
    return <span className="jp-ReefLab-muted">no account on the hub now</span>;
  }
  const parts: string[] = [];
  const servers = Object.entries(entry.servers ?? {});
  if (entry.servers) {
    const server = ([name, s]: [string, { ready: boolean }]) =>
      `${name === 'default' ? 'server' : `server ${name}`} ${s.ready ? 'running' : 'starting'}`;
    parts.push(servers.length === 0 ? 'no server' : servers.map(server).join(', '));
  }
  const titles: string[] = [];
  for (const [kind, runs] of Object.entries(entry.running ?? {})) {
    if (runs.length) {
      parts.push(`${runs.length} ${runs.length === 1 ? kind.replace(/s$/, '') : kind}`);
      titles.push(...runs.map(r => `${kind.replace(/s$/, '')} ${r.title} (${r.state})`));
    }
  }
  if (entry.pods) {
    parts.push(plural(entry.pods.length, 'pod'));
    titles.push(...entry.pods.map(p => `${p.name} (${p.phase ?? 'unknown'})`));
  }
  return (
    <span aria-label="Running" title={titles.join('\n') || undefined}>
      {parts.join(' · ') || 'nothing running'}
    </span>
  );
}

function UserRow(props: {
  name: string;
  entry?: Platform.IUserStatus;
  usage?: Platform.IUserUsage;
  period: (typeof PERIODS)[number];
  since?: number;
}): JSX.Element {
  const { name, entry, usage, period } = props;
  const bars = (usage?.buckets ?? []).map(b => ({
    start: b.start,
    value: b.cpu_hours,
    title: `${hours(b.cpu_hours)} CPU-h, ${hours(b.gpu_hours)} GPU-h, ${plural(b.requests, 'request')}`,
    data: { cpu_hours: b.cpu_hours, requests: b.requests }
  }));
  return (
    <li className="jp-ReefLab-platformUser" aria-label={name}>
      <div>
        <strong>{name}</strong> {entry?.admin && <span className="jp-ReefLab-badge">admin</span>}{' '}
        <Running entry={entry} />
      </div>
      <div aria-label="Usage" className="jp-ReefLab-muted">
        {hours(usage?.cpu_hours ?? 0)} CPU-h · {hours(usage?.gpu_hours ?? 0)} GPU-h ·{' '}
        {plural(usage?.requests ?? 0, 'request')} ({period.label.toLowerCase()})
      </div>
      {bars.length > 0 && (
        <BarsPlot
          since={period.since}
          step={period.step}
          start={props.since}
          bars={bars}
          label={`${name}'s CPU-hours per ${period.step / 3600} h, ${period.label.toLowerCase()}`}
        />
      )}
    </li>
  );
}

export function PlatformSection(props: { api: PlatformAPI; visible: boolean }): JSX.Element | null {
  const { api } = props;
  const [open, setOpen] = React.useState(false);
  const [period, setPeriod] = React.useState(PERIODS[0]);
  const fetchStatus = React.useCallback(
    (signal: AbortSignal): Promise<Answer> =>
      api.status(signal).then(
        status => ({ refused: false, status }),
        e => {
          if (e instanceof ReefLabError && e.status === 403) {
            return { refused: true };
          }
          throw e;
        }
      ),
    [api]
  );
  // asked once to know whether to show the section at all, then every STATUS_MS while it is open
  const status = usePolled(fetchStatus, a => (open && a && !a.refused ? STATUS_MS : null), props.visible, open ? 1 : 0);
  const fetchUsage = React.useCallback(
    (signal: AbortSignal) => api.usage(period.since, period.step, signal),
    [api, period]
  );
  const answer = status.value;
  const shown = answer !== null && !answer.refused;
  const usage = usePolled(fetchUsage, () => USAGE_MS, props.visible && open && shown);
  if (answer?.refused || (answer === null && !status.error)) {
    return null; // not an admin (or not known yet): no section
  }
  const current = answer && !answer.refused ? answer.status : null;
  const byName = new Map((current?.users ?? []).map(u => [u.user, u]));
  const names = [...new Set([...byName.keys(), ...Object.keys(usage.value?.users ?? {})])].sort();
  return (
    <Section title="Platform" defaultOpen={false} className="jp-ReefLab-platformSection" onToggle={setOpen}>
      {status.error && <ErrorNotice message={status.error} onRetry={status.refresh} />}
      {current && (
        <div className="jp-ReefLab-monitoring">
          <FreeCapacity status={current} />
          <div role="group" aria-label="Usage period">
            {PERIODS.map(p => (
              <button
                key={p.label}
                type="button"
                className="jp-ReefLab-chip"
                aria-pressed={p === period}
                onClick={() => setPeriod(p)}
              >
                {p.label}
              </button>
            ))}
          </div>
          {usage.error && <div className="jp-ReefLab-muted">{usage.error}</div>}
          {!usage.value && !usage.error && <Loading>Loading the usage…</Loading>}
          <ul className="jp-ReefLab-platformUsers" aria-label="Users">
            {names.map(name => (
              <UserRow
                key={name}
                name={name}
                entry={byName.get(name)}
                usage={usage.value?.users[name]}
                period={period}
                since={usage.value?.since}
              />
            ))}
          </ul>
        </div>
      )}
    </Section>
  );
}
