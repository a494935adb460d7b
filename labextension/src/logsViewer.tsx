/**
 * Logs: a deployment's, followed live (streamed) and drawn at most ten times a second so the panel stays
 * responsive; a job's or a pipeline's, asked again while it runs (PolledLog).
 */
import * as React from 'react';

import { Deployments, DeploymentsAPI, errorMessage } from './api';
import { appendLog, ILogBuffer } from './deploymentsState';
import { ErrorNotice, Loading } from './notice';
import { usePolled } from './usePolled';

const MAX_LINES = 2000;
const DRAW_EVERY_MS = 100;

type Status = 'following' | 'ended' | 'failed';

export function LogsViewer(props: {
  deployment: Deployments.IDeployment;
  api: Pick<DeploymentsAPI, 'followLogs'>;
}): JSX.Element {
  const { deployment, api } = props;
  const [buffer, setBuffer] = React.useState<ILogBuffer>({ lines: [], partial: '' });
  const [status, setStatus] = React.useState<Status>('following');
  const [error, setError] = React.useState<string | null>(null);
  const [attempt, setAttempt] = React.useState(0);
  const pre = React.useRef<HTMLPreElement>(null);
  const atBottom = React.useRef(true);

  // a restart starts a new run with a new log: follow again
  React.useEffect(() => {
    const controller = new AbortController();
    let latest: ILogBuffer = { lines: [], partial: '' };
    let timer: ReturnType<typeof setTimeout> | null = null;
    const draw = () => {
      timer = null;
      if (!controller.signal.aborted) {
        setBuffer(latest);
      }
    };
    setBuffer(latest);
    setStatus('following');
    setError(null);
    api
      .followLogs(
        deployment.id,
        text => {
          latest = appendLog(latest, text, MAX_LINES);
          timer ??= setTimeout(draw, DRAW_EVERY_MS);
        },
        controller.signal
      )
      .then(
        () => {
          if (!controller.signal.aborted) {
            draw();
            setStatus('ended');
          }
        },
        e => {
          if (!controller.signal.aborted) {
            draw();
            setStatus('failed');
            setError(errorMessage(e));
          }
        }
      );
    return () => {
      controller.abort();
      if (timer) {
        clearTimeout(timer);
      }
    };
  }, [api, deployment.id, deployment.started_at, attempt]);

  // keep showing the newest lines, unless the reader scrolled up to read older ones
  React.useLayoutEffect(() => {
    const node = pre.current;
    if (node && atBottom.current) {
      node.scrollTop = node.scrollHeight;
    }
  }, [buffer]);

  const lines = buffer.partial ? [...buffer.lines, buffer.partial] : buffer.lines;
  return (
    <div className="jp-ReefLab-logs" aria-label={`Log of ${deployment.title}`} role="region">
      <pre
        ref={pre}
        tabIndex={0}
        onScroll={e => {
          const node = e.currentTarget;
          atBottom.current = node.scrollHeight - node.scrollTop - node.clientHeight < 24;
        }}
      >
        {lines.length ? lines.join('\n') : status === 'following' ? '' : 'The log is empty.'}
      </pre>
      <div className="jp-ReefLab-logsStatus">
        {status === 'following' && <Loading>Following the log as it grows…</Loading>}
        {status === 'ended' && (
          <span className="jp-ReefLab-muted">
            {deployment.state === 'ready' || deployment.state === 'starting'
              ? 'The log stream closed.'
              : 'The deployment is not running: this is its whole log.'}
            <button type="button" className="jp-ReefLab-linkButton" onClick={() => setAttempt(a => a + 1)}>
              Reload
            </button>
          </span>
        )}
        {error && <ErrorNotice message={error} onRetry={() => setAttempt(a => a + 1)} />}
      </div>
    </div>
  );
}

/** The last lines of a log, asked again every 2 s while `active` and once more when it ended; kept scrolled down. */
export function PolledLog(props: {
  /** whose log, e.g. a job's title */
  name: string;
  active: boolean;
  fetch: (signal: AbortSignal) => Promise<string[]>;
  empty: string;
}): JSX.Element {
  const { active } = props;
  const log = usePolled(props.fetch, () => (active ? 2000 : null), true);
  const pre = React.useRef<HTMLPreElement>(null);
  React.useLayoutEffect(() => {
    if (pre.current) {
      pre.current.scrollTop = pre.current.scrollHeight;
    }
  }, [log.value]);
  React.useEffect(() => {
    if (!active) {
      log.refresh(); // its last lines once it ended
    }
  }, [active]);
  return (
    <div className="jp-ReefLab-logs" role="region" aria-label={`Log of ${props.name}`}>
      {log.error && <ErrorNotice message={log.error} onRetry={log.refresh} />}
      {log.value === null && !log.error && <Loading>Loading the log…</Loading>}
      {log.value !== null && (
        <pre ref={pre} tabIndex={0}>
          {log.value.length ? log.value.join('\n') : props.empty}
        </pre>
      )}
    </div>
  );
}
