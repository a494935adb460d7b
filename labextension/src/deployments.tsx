/** Your deployments: live state, hardware, age, a try's time left, the address to call, why one failed, and actions. */
import { copyIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ActionStatus, ConfirmDelete, useAction } from './actions';
import { Deployments, DeploymentsAPI, deploymentURL } from './api';
import { copyText } from './clipboard';
import {
  countdown,
  describeAge,
  describeDeploymentHardware,
  isActive,
  newestFirst,
  STATE_WORDS,
  tickInterval
} from './deploymentsState';
import { LogsViewer } from './logsViewer';
import { MonitoringView } from './monitoringView';
import { PolledList } from './polledList';
import type { IOpener } from './mainArea';
import { formatMemory } from './marketplaceState';
import { TryView } from './tryView';
import { IDeploymentsList, useNow } from './useDeployments';

type Open = 'logs' | 'try' | 'metrics' | null;

function Address(props: { deployment: Deployments.IDeployment }): JSX.Element {
  const url = deploymentURL(props.deployment);
  const [copied, setCopied] = React.useState<string | null>(null);
  React.useEffect(() => {
    if (copied) {
      const timer = setTimeout(() => setCopied(null), 4000);
      return () => clearTimeout(timer);
    }
  }, [copied]);
  return (
    <div className="jp-ReefLab-address">
      <code title={url}>{url}</code>
      <button
        type="button"
        className="jp-ReefLab-iconButton"
        aria-label="Copy the address"
        title="Copy the address"
        onClick={() =>
          copyText(url).then(
            () => setCopied('Copied'),
            () => setCopied('Could not copy: select the address and copy it')
          )
        }
      >
        <copyIcon.react tag="span" />
      </button>
      {copied && (
        <span className="jp-ReefLab-muted" role="status">
          {copied}
        </span>
      )}
    </div>
  );
}

interface IRowProps {
  deployment: Deployments.IDeployment;
  api: DeploymentsAPI;
  now: number;
  /** just started from the panel: show it, and open Try once a try is ready */
  focused: boolean;
  onChanged: (deployment: Deployments.IDeployment) => void;
  onDeleted: (id: string) => void;
  /** opens Try and logs in tabs of their own; without it they unfold in the row */
  opener?: Pick<IOpener, 'tryDeployment' | 'logs' | 'forget'>;
}

function DeploymentRow(props: IRowProps): JSX.Element {
  const { deployment: d, api, now } = props;
  const [open, setOpen] = React.useState<Open>(null);
  const [confirming, setConfirming] = React.useState(false);
  const action = useAction();
  const busy = action.busy !== null;
  const row = React.useRef<HTMLLIElement>(null);
  const state = STATE_WORDS[d.state];
  const left = countdown(d, now);
  const ready = d.state === 'ready';

  React.useEffect(() => {
    if (props.focused) {
      row.current?.scrollIntoView({ block: 'nearest' });
    }
  }, [props.focused]);
  const { opener } = props;
  const toggle = (what: Open) => {
    if (opener && what === 'try') {
      opener.tryDeployment(d);
    } else if (opener && what === 'logs') {
      opener.logs(d);
    } else {
      setOpen(open === what ? null : what);
    }
  };
  React.useEffect(() => {
    if (props.focused && ready && d.kind === 'try') {
      toggle('try');
    }
  }, [props.focused, ready, d.kind]);
  React.useEffect(() => {
    if (!ready && open === 'try') {
      setOpen(null);
    }
  }, [ready, open]);

  const restart = (hardware?: Deployments.IDeployment['suggestion']) =>
    action.run('Restarting…', () => api.restartDeployment(d.id, hardware ?? undefined).then(props.onChanged));
  const remove = () =>
    action.run('Deleting…', () =>
      api.deleteDeployment(d.id).then(() => {
        setConfirming(false);
        props.opener?.forget(d.id);
        props.onDeleted(d.id);
      })
    );

  return (
    <li ref={row} className={`jp-ReefLab-deployment jp-mod-${d.state}`} data-deployment-id={d.id} aria-label={d.title}>
      <div className="jp-ReefLab-deploymentHead">
        <span className={`jp-ReefLab-state jp-mod-${d.state}`} title={state.hint}>
          {(d.state === 'queued' || d.state === 'starting') && (
            <span className="jp-ReefLab-spinner" aria-hidden="true" />
          )}
          {state.label}
        </span>
        <strong className="jp-ReefLab-deploymentTitle">{d.title}</strong>
        {d.kind === 'try' && <span className="jp-ReefLab-badge">try</span>}
        {d.drift?.alert && (
          <button
            type="button"
            className="jp-ReefLab-badge jp-mod-failed jp-ReefLab-driftBadge"
            title="Its recent inputs differ from the reference images: open its Metrics"
            onClick={() => setOpen('metrics')}
          >
            Drift alert
          </button>
        )}
      </div>
      <div className="jp-ReefLab-muted">
        {d.module} · {describeDeploymentHardware(d)} · started {describeAge(d.created, now)}
        {left && (
          <>
            {' · '}
            <span className="jp-ReefLab-countdown" title="A try stops by itself">
              {left}
            </span>
          </>
        )}
      </div>
      {isActive(d) && <Address deployment={d} />}
      {d.env.length > 0 && (
        <div className="jp-ReefLab-muted">Environment: {d.env.join(', ')} (values hidden)</div>
      )}
      {d.warnings.map(w => (
        <div key={w} className="jp-ReefLab-warning" role="note">
          {w}
        </div>
      ))}
      {d.reason && (
        <pre className={`jp-ReefLab-reason${d.state === 'failed' ? ' jp-mod-failed' : ''}`} aria-label="Why">
          {d.reason}
        </pre>
      )}
      {d.state === 'failed' && d.suggestion && (
        <div className="jp-ReefLab-fix" role="group" aria-label="Suggested fix">
          <span>It ran out of memory with {formatMemory(d.hardware.memory_MB)}.</span>
          <button
            type="button"
            className="jp-ReefLab-button jp-mod-accept"
            disabled={busy}
            onClick={() => restart(d.suggestion)}
          >
            Restart with {formatMemory(d.suggestion.memory_MB)}
          </button>
        </div>
      )}
      <div className="jp-ReefLab-rowActions">
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={!ready}
          title={ready ? 'Send it one of your images' : 'It can be tried once it is ready'}
          aria-expanded={opener ? undefined : open === 'try'}
          onClick={() => toggle('try')}
        >
          Try
        </button>
        <button
          type="button"
          className="jp-ReefLab-button"
          aria-expanded={opener ? undefined : open === 'logs'}
          onClick={() => toggle('logs')}
        >
          Logs
        </button>
        <button
          type="button"
          className="jp-ReefLab-button"
          title="Its requests, errors and latency over the last hour, and drift of its inputs"
          aria-expanded={open === 'metrics'}
          onClick={() => toggle('metrics')}
        >
          Metrics
        </button>
        <button type="button" className="jp-ReefLab-button" disabled={busy} onClick={() => restart()}>
          Restart
        </button>
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={busy}
          onClick={() => setConfirming(true)}
        >
          Delete
        </button>
      </div>
      {confirming && (
        <ConfirmDelete name={d.title} busy={busy} onDelete={remove} onKeep={() => setConfirming(false)}>
          Delete <strong>{d.title}</strong>? It stops answering and its log is removed.
        </ConfirmDelete>
      )}
      <ActionStatus action={action} />
      {open === 'logs' && <LogsViewer deployment={d} api={api} />}
      {open === 'try' && ready && <TryView deployment={d} api={api} />}
      {open === 'metrics' && <MonitoringView deploymentId={d.id} />}
    </li>
  );
}

export interface IDeploymentsViewProps {
  api: DeploymentsAPI;
  deployments: IDeploymentsList;
  /** the deployment just started from the marketplace */
  focusId?: string | null;
  opener?: Pick<IOpener, 'tryDeployment' | 'logs' | 'forget'>;
}

export function DeploymentsView(props: IDeploymentsViewProps): JSX.Element {
  const { list, error, refresh, put, drop } = props.deployments;
  const now = useNow(tickInterval(list));
  return (
    <div className="jp-ReefLab-deployments">
      <PolledList
        polled={{ value: list, error, refresh }}
        sort={newestFirst}
        label="Your deployments"
        loading="Loading your deployments…"
        empty="Nothing runs yet. Open a module in the Marketplace and choose Try or Deploy."
      >
        {d => (
          <DeploymentRow
            key={d.id}
            deployment={d}
            api={props.api}
            now={now}
            focused={d.id === props.focusId}
            onChanged={put}
            onDeleted={drop}
            opener={props.opener}
          />
        )}
      </PolledList>
    </div>
  );
}
