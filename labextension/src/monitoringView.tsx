/** A deployment's monitoring in its row: requests and errors over the last hour, latency, and drift (a badge, the
 * p-value of each window against the threshold, and the alerts). Plots are plain SVG. */
import * as React from 'react';

import { Monitoring, monitoringApi, MonitoringAPI } from './api/monitoring';
import { usePolled } from './usePolled';

const POLL_MS = 10000;
const WIDTH = 240;
const HEIGHT = 48;

export function ms(seconds: number | null): string {
  return seconds === null ? '–' : `${(seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0)} ms`;
}

/** One bar of a BarsPlot: `value` high, its `part` (errors) in the failure colour at the bottom; `data` becomes
 * data-<key> attributes (what tests and browser checks read). */
export interface IBar {
  start: number;
  value: number;
  part?: number;
  title: string;
  data?: Record<string, number>;
}

/** Bars over time: a slot of `step` seconds for each bucket from `start` (default: `since` seconds ago) on. */
export function BarsPlot(props: {
  since: number;
  step: number;
  bars: IBar[];
  label: string;
  start?: number;
}): JSX.Element {
  const { since, step, bars } = props;
  const slots = Math.max(1, Math.ceil(since / step));
  const start = props.start ?? Date.now() / 1000 - since;
  const most = Math.max(Number.MIN_VALUE, ...bars.map(b => b.value));
  const width = WIDTH / slots;
  return (
    <svg
      className="jp-ReefLab-plot"
      role="img"
      aria-label={props.label}
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      width="100%"
      height={HEIGHT}
      preserveAspectRatio="none"
    >
      {bars.map(b => {
        const x = Math.min(slots - 1, Math.max(0, Math.floor((b.start - start) / step))) * width;
        const h = (b.value / most) * HEIGHT;
        const e = ((b.part ?? 0) / most) * HEIGHT;
        const data = Object.fromEntries(Object.entries(b.data ?? {}).map(([k, v]) => [`data-${k}`, v]));
        return (
          <g key={b.start} {...data}>
            <title>{b.title}</title>
            <rect className="jp-ReefLab-plotOk" x={x} y={HEIGHT - h} width={Math.max(1, width - 1)} height={h - e} />
            {e > 0 && (
              <rect className="jp-ReefLab-plotError" x={x} y={HEIGHT - e} width={Math.max(1, width - 1)} height={e} />
            )}
          </g>
        );
      })}
    </svg>
  );
}

/** Requests per bucket as bars (errors in the failure colour, stacked at the bottom). */
export function RequestsPlot(props: { metrics: Pick<Monitoring.IMetrics, 'window'> }): JSX.Element {
  const { since_s: since, step_s: step, buckets } = props.metrics.window;
  const bars = buckets.map(b => ({
    start: b.start,
    value: b.requests,
    part: b.errors,
    title: `${b.requests} requests, ${b.errors} errors, p95 ${ms(b.latency_s.p95)}`,
    data: { requests: b.requests, errors: b.errors }
  }));
  const label = `Requests per ${step} s over the last ${Math.round(since / 60)} minutes`;
  return <BarsPlot since={since} step={step} bars={bars} label={label} />;
}

/** The p-value of each drift evaluation (log scale), with the alert threshold as a line. */
export function DriftPlot(props: { evaluations: Monitoring.IEvaluation[]; alpha: number }): JSX.Element {
  const points = props.evaluations.slice(-60);
  const y = (p: number) => (Math.min(4, -Math.log10(Math.max(p, 1e-4))) / 4) * (HEIGHT - 4) + 2;
  // the newest at the right edge, the others spread to the left (a margin of the dots' radius)
  const step = points.length > 1 ? (WIDTH - 6) / (points.length - 1) : 0;
  const x = (i: number) => (points.length > 1 ? 3 + i * step : WIDTH - 3);
  const line = points.map((e, i) => `${x(i)},${HEIGHT - y(e.p_value)}`).join(' ');
  const threshold = HEIGHT - y(props.alpha);
  return (
    <svg
      className="jp-ReefLab-plot"
      role="img"
      aria-label="Drift p-value of each window (lower is more drift; the line is the alert threshold)"
      viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
      width="100%"
      height={HEIGHT}
    >
      <line className="jp-ReefLab-plotThreshold" x1={0} x2={WIDTH} y1={threshold} y2={threshold} />
      {points.length > 1 && <polyline className="jp-ReefLab-plotLine" points={line} fill="none" />}
      {points.map((e, i) => (
        <circle
          key={e.ts}
          className={e.drift ? 'jp-ReefLab-plotError' : 'jp-ReefLab-plotOk'}
          cx={x(i)}
          cy={HEIGHT - y(e.p_value)}
          r={2.5}
        >
          <title>
            p = {e.p_value.toPrecision(2)} over {e.size} inputs
          </title>
        </circle>
      ))}
    </svg>
  );
}

export function MonitoringView(props: { deploymentId: string; api?: MonitoringAPI }): JSX.Element {
  const api = props.api ?? monitoringApi;
  const id = props.deploymentId;
  const fetchMetrics = React.useCallback((signal: AbortSignal) => api.metrics(id, 3600, 60, signal), [api, id]);
  const fetchDrift = React.useCallback((signal: AbortSignal) => api.drift(id, signal), [api, id]);
  const metrics = usePolled(fetchMetrics, () => POLL_MS, true);
  const drift = usePolled(fetchDrift, () => POLL_MS, true);
  const m = metrics.value;
  const d = drift.value;
  if (metrics.error || drift.error) {
    return (
      <div className="jp-ReefLab-error" role="alert">
        {metrics.error ?? drift.error}
      </div>
    );
  }
  if (!m || !d) {
    return <div className="jp-ReefLab-muted">Loading its metrics…</div>;
  }
  const w = m.window;
  const alerts = d.events.filter(e => e.kind === 'drift-alert' || e.kind === 'drift-cleared').slice(-3);
  return (
    <section className="jp-ReefLab-monitoring" aria-label="Monitoring">
      <div aria-label="Requests in the last hour">
        <strong>{w.requests}</strong> requests in the last hour · <strong>{w.errors}</strong>{' '}
        {w.errors === 1 ? 'error' : 'errors'} · latency p50{' '}
        {ms(w.latency_s.p50)}, p95 {ms(w.latency_s.p95)}, p99 {ms(w.latency_s.p99)}
        <span className="jp-ReefLab-muted"> · {m.total.requests} since it started</span>
      </div>
      <RequestsPlot metrics={m} />
      <div aria-label="Drift">
        {!d.settings.enabled ? (
          <span className="jp-ReefLab-muted">
            Drift detection is off (turn it on from Python: d.monitor_drift("a folder of reference images")).
          </span>
        ) : (
          <>
            {d.alert ? (
              <span className="jp-ReefLab-badge jp-mod-failed" role="status">
                Drift alert
              </span>
            ) : (
              <span className="jp-ReefLab-badge" role="status">
                No drift
              </span>
            )}{' '}
            {d.last
              ? `last window: p = ${d.last.p_value.toPrecision(2)} (alert below ${d.settings.alpha})`
              : `waiting for ${d.settings.window} inputs`}
            {d.evaluations.length > 0 && <DriftPlot evaluations={d.evaluations} alpha={d.settings.alpha ?? 0.01} />}
            {alerts.map(e => (
              <div key={e.ts} className={e.kind === 'drift-alert' ? 'jp-ReefLab-warning' : 'jp-ReefLab-muted'}>
                {new Date(e.ts * 1000).toLocaleString()}: {e.message}
              </div>
            ))}
          </>
        )}
      </div>
    </section>
  );
}
