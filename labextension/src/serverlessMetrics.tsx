/** A serverless service's calls as the engine counts them (its owner only): the last hour's sync calls and finished
 * jobs a minute a bar, errors, latency percentiles, and the jobs waiting now. */
import * as React from 'react';

import { Serverless, ServerlessAPI } from './api';
import { ms, RequestsPlot } from './monitoringView';
import { usePolled } from './usePolled';

const POLL_MS = 10000;

function latency(l: Serverless.ILatency): string {
  return `p50 ${ms(l.p50)}, p95 ${ms(l.p95)}, p99 ${ms(l.p99)}`;
}

function calls(n: number): string {
  return n === 1 ? '1 call' : `${n} calls`;
}

function errors(n: number): string {
  return n === 1 ? '1 error' : `${n} errors`;
}

export function ServiceMetrics(props: { api: ServerlessAPI; service: string }): JSX.Element {
  const { api, service } = props;
  const fetch = React.useCallback(
    (signal: AbortSignal) => api.serviceMetrics(service, 3600, 60, signal),
    [api, service]
  );
  const metrics = usePolled(fetch, () => POLL_MS, true);
  const m = metrics.value;
  if (metrics.error) {
    return (
      <div className="jp-ReefLab-error" role="alert">
        {metrics.error}
      </div>
    );
  }
  if (!m) {
    return <div className="jp-ReefLab-muted">Loading its metrics…</div>;
  }
  return (
    <section className="jp-ReefLab-monitoring" aria-label="Metrics">
      <div aria-label="Calls in the last hour">
        <strong>{m.window.requests}</strong> {m.window.requests === 1 ? 'call' : 'calls'} in the last hour ·{' '}
        <strong>{m.window.errors}</strong> {m.window.errors === 1 ? 'error' : 'errors'}
        <span className="jp-ReefLab-muted"> · {calls(m.total.requests)} since it was made</span>
      </div>
      <RequestsPlot metrics={m} />
      <div aria-label="Sync calls">
        Sync: {calls(m.sync.requests)}, {errors(m.sync.errors)} · latency {latency(m.sync.latency_s)}
      </div>
      <div aria-label="Async jobs">
        Jobs: {m.async.requests} finished, {errors(m.async.errors)} · queued to done{' '}
        {latency(m.async.latency_s)} · run {latency(m.async.run_s)}
        <span className="jp-ReefLab-muted">
          {' '}
          · {m.jobs.pending} waiting, {m.jobs.running} running
        </span>
      </div>
    </section>
  );
}
