/** A module's checks on its page: the Check button, the run while it goes (polled, with its log), its report. */
import { launchIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ActionStatus, useAction } from './actions';
import { Catalog, Checks, ChecksAPI, checkReportURL, PublishAPI } from './api';
import { checkActive, CHECKS_WHAT, describeRun, newestCheck, summarizeReport } from './checksState';
import { PolledLog } from './logsViewer';
import { ErrorNotice } from './notice';
import { FAST_MS } from './panelState';
import { useFetched, usePolled } from './usePolled';

/** The check calls, when the API given has them all (tests of other views give none). */
export function checksOf(api: Partial<ChecksAPI>): ChecksAPI | null {
  const { checks, check, startCheck, checkLog } = api;
  return checks && check && startCheck && checkLog ? { checks, check, startCheck, checkLog } : null;
}

/** The publishing calls, when the API given has them. */
export function publishingOf(api: Partial<PublishAPI>): PublishAPI | null {
  const { published, publish, unpublish } = api;
  return published && publish && unpublish ? { published, publish, unpublish } : null;
}

/**
 * Sharing a module through the platform's catalogue: Publish once it passed its checks (every user's marketplace
 * then lists it with its badge), or who published it and when, with Unpublish (the catalogue lets only them).
 */
function Publishing(props: { api: PublishAPI; module: string; passed: boolean }): JSX.Element {
  const { api, module, passed } = props;
  const action = useAction();
  const [attempt, setAttempt] = React.useState(0);
  const listed = useFetched(signal => api.published(signal), [api, attempt]);
  const found = listed.value?.find(item => item.id === module) ?? null;
  const change = (what: string, call: () => Promise<unknown>) =>
    action.run(what, () => call().then(() => setAttempt(a => a + 1)));
  if (listed.error) {
    return <p className="jp-ReefLab-muted">Sharing: {listed.error}</p>;
  }
  return (
    <div className="jp-ReefLab-publishing" role="region" aria-label="Sharing">
      {found ? (
        <p className="jp-ReefLab-muted">
          In the platform's catalogue: published by {found.publisher} on {found.published.slice(0, 10)}, every user's
          marketplace lists it with its badge.
        </p>
      ) : (
        <p className="jp-ReefLab-muted">
          {passed
            ? 'It passed its checks: publish it to list it, with its report, in every user’s marketplace.'
            : 'Once it passes its checks you can publish it to every user’s marketplace.'}
        </p>
      )}
      <div className="jp-ReefLab-rowActions">
        {found ? (
          <button
            type="button"
            className="jp-ReefLab-button"
            disabled={action.busy !== null}
            onClick={() => change('Unpublishing…', () => api.unpublish(module))}
          >
            Unpublish
          </button>
        ) : (
          <button
            type="button"
            className="jp-ReefLab-button"
            disabled={!passed || action.busy !== null || !listed.done}
            title={passed ? 'Share it with every user of the platform' : 'Check it first: it must pass'}
            onClick={() => change('Publishing…', () => api.publish(module))}
          >
            Publish
          </button>
        )}
      </div>
      <ActionStatus action={action} />
    </div>
  );
}

/** The readable page of a report, in a new tab. */
function OpenReport(props: { report: string }): JSX.Element {
  return (
    <a className="jp-ReefLab-button" href={checkReportURL(props.report)} target="_blank" rel="noopener noreferrer">
      Open report
      <launchIcon.react tag="span" className="jp-ReefLab-linkIcon" />
    </a>
  );
}

/** Each check of a report: passed, failed or skipped, why, and what its tool said (folded). */
export function CheckResults(props: { report: Checks.IReport }): JSX.Element {
  return (
    <ul className="jp-ReefLab-checkResults" aria-label="Check results">
      {props.report.results.map(result => (
        <li
          key={result.name}
          className={`jp-ReefLab-checkResult jp-mod-check-${result.state}`}
          data-check={result.name}
          aria-label={result.title}
        >
          <div className="jp-ReefLab-deploymentHead">
            <span className={`jp-ReefLab-state jp-mod-check-${result.state}`}>{result.state}</span>
            <strong>{result.title}</strong>
            <span className="jp-ReefLab-muted">{result.seconds.toFixed(1)} s</span>
          </div>
          <p className="jp-ReefLab-checkReason">{result.reason}</p>
          {result.details && (
            <details className="jp-ReefLab-json">
              <summary>Details</summary>
              <pre>{result.details}</pre>
            </details>
          )}
        </li>
      ))}
    </ul>
  );
}

/** One run of the checks: its state, its log (shown while it runs), its report once it ended. */
function CheckRun(props: { api: ChecksAPI; run: Checks.IRun }): JSX.Element {
  const { api, run } = props;
  const active = checkActive(run);
  const [logs, setLogs] = React.useState<boolean | null>(null); // null: shown while it runs
  const showLogs = logs ?? active;
  const fetchLog = React.useCallback((signal: AbortSignal) => api.checkLog(run.id, 200, signal), [api, run.id]);
  const { words, state } = describeRun(run);
  const report = run.report;
  return (
    <div className="jp-ReefLab-checkRun" role="region" aria-label="Latest check">
      <div className="jp-ReefLab-deploymentHead">
        <span className={`jp-ReefLab-state jp-ReefLab-checkState jp-mod-${state}`} role="status">
          {active && <span className="jp-ReefLab-spinner" aria-hidden="true" />}
          {words}
        </span>
        <span className="jp-ReefLab-muted">
          {report ? `${summarizeReport(report)} · ${report.checked.slice(0, 10)}` : run.source}
        </span>
      </div>
      {!report && !active && run.reason && (
        <pre className="jp-ReefLab-reason jp-mod-failed" aria-label="Why">
          {run.reason}
        </pre>
      )}
      <div className="jp-ReefLab-rowActions">
        <button type="button" className="jp-ReefLab-button" aria-expanded={showLogs} onClick={() => setLogs(!showLogs)}>
          Log
        </button>
        {report && <OpenReport report={run.id} />}
      </div>
      {showLogs && <PolledLog name="the check" active={active} fetch={fetchLog} empty="The log is empty." />}
      {report && <CheckResults report={report} />}
    </div>
  );
}

/**
 * The Checks section of a module's page: your latest check of it (asked again every 2 s while it runs), and a
 * Check button for modules installed here. `onChecked` hears of a check that ended while the page was open.
 */
export function ModuleChecks(props: {
  module: Catalog.IModule;
  api: ChecksAPI;
  publishing?: PublishAPI | null;
  onChecked: (run: Checks.IRun) => void;
}): JSX.Element {
  const { api, module, onChecked, publishing } = props;
  const action = useAction();
  const [started, setStarted] = React.useState<Checks.IRun | null>(null);
  const latest = useFetched(signal => api.checks(signal).then(runs => newestCheck(runs, module.id)), [api, module.id]);
  const known = started ?? latest.value;
  const id = known?.id ?? null;
  const fetch = React.useCallback((signal: AbortSignal) => api.check(id!, signal), [api, id]);
  const polled = usePolled(fetch, run => (run && !checkActive(run) ? null : FAST_MS), id !== null);
  // the answer about an earlier run, until the new one's comes
  const run = polled.value?.id === id ? polled.value : known;
  const active = run !== null && checkActive(run);

  const wasActive = React.useRef(false);
  React.useEffect(() => {
    if (wasActive.current && !active && run) {
      onChecked(run);
    }
    wasActive.current = active;
  }, [active, id]);

  const installed = module.entry_point !== null; // only a module installed here can be checked here
  return (
    <div className="jp-ReefLab-checks">
      <p className="jp-ReefLab-muted">What the platform checks before a module is listed: {CHECKS_WHAT}.</p>
      {installed ? (
        <div className="jp-ReefLab-rowActions">
          <button
            type="button"
            className="jp-ReefLab-button"
            disabled={active || action.busy !== null}
            title={active ? 'A check of it is running' : `Check it: ${CHECKS_WHAT} (a minute or two)`}
            onClick={() => action.run('Starting the check…', () => api.startCheck(module.id).then(setStarted))}
          >
            Check
          </button>
        </div>
      ) : (
        <p className="jp-ReefLab-muted">Its code is not installed here: it is checked where it is published.</p>
      )}
      <ActionStatus action={action} />
      {latest.error && <ErrorNotice message={latest.error} />}
      {polled.error && <ErrorNotice message={polled.error} onRetry={polled.refresh} />}
      {run && <CheckRun key={run.id} api={api} run={run} />}
      {installed && publishing && !active && (
        <Publishing
          api={publishing}
          module={module.id}
          passed={run?.report?.passed ?? module.check?.state === 'passed'}
        />
      )}
    </div>
  );
}
