/** Everything about one module: description, needs, hardware that fits, its checks, links, metadata problems. */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { caretLeftIcon, launchIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Catalog, Checks, Deployments, MarketplaceAPI, Pipelines } from './api';
import { CheckBadge, FacetBadges, InvalidBadge, SourceBadge, UntrainedBadge } from './badges';
import { checksOf, ModuleChecks, publishingOf } from './checks';
import { badgeOf } from './checksState';
import { DeployDialog } from './deployDialog';
import { HardwareForm } from './hardwareForm';
import { Markdown } from './markdown';
import { describeNeeds, problemField, RETRAIN_PIPELINE, retrainParameters, safeLinks } from './marketplaceState';
import { ErrorNotice, Loading } from './notice';
import { RunPipelineForm } from './pipelines';
import { MakeServerless } from './serverlessDialog';
import { useFetched } from './usePolled';

/** What the deploy buttons say they do. */
const TRY_WHAT = 'run it for a few minutes on your own images';
const DEPLOY_WHAT = 'start it as a service you can call';
const TRAIN_WHAT = 'run the retraining pipeline on your images; the result becomes a module you can try';

export interface IModuleDetailProps {
  id: string;
  api: MarketplaceAPI;
  rendermime?: IRenderMimeRegistry | null;
  /** back to the results it was opened from (none in a tab of its own) */
  onBack?: () => void;
  /** its title, once known (for the tab it is shown in) */
  onTitle?: (title: string) => void;
  /** a deployment or try was started from here */
  onDeployed?: (deployment: Deployments.IDeployment) => void;
  /** a check of it ended while its page was open (its card's badge may have changed) */
  onChecked?: (run: Checks.IRun) => void;
}

/** Why the deploy buttons are off, or null when they work. */
function whyNotDeployable(module: Catalog.IModule, form: Catalog.IForm | null): string | null {
  if (!form) {
    return 'Checking which hardware fits…';
  }
  if (!module.deployable || !form.deployable) {
    return 'This module cannot run here (see Hardware below).';
  }
  if (!form.profiles.length) {
    return 'You may not use any hardware profile (see Hardware below).';
  }
  return null;
}

function DeployActions(props: {
  module: Catalog.IModule;
  form: Catalog.IForm | null;
  api: MarketplaceAPI;
  onOpen: (kind: Deployments.Kind) => void;
  /** train it instead of trying it (a module without trained weights), when it can be trained here */
  onTrain?: () => void;
}): JSX.Element {
  const why = whyNotDeployable(props.module, props.form);
  const action = (kind: Deployments.Kind, label: string, what: string) => (
    <button
      type="button"
      className={`jp-ReefLab-button${kind === 'deployment' ? ' jp-mod-accept' : ''}`}
      disabled={why !== null}
      title={why ?? `${label}: ${what}`}
      onClick={() => props.onOpen(kind)}
    >
      {label}
    </button>
  );
  return (
    <div className="jp-ReefLab-actions">
      {props.module.trained !== false
        ? action('try', 'Try', TRY_WHAT)
        : props.onTrain && (
            <button
              type="button"
              className="jp-ReefLab-button jp-mod-accept"
              title={`Train it: ${TRAIN_WHAT}`}
              onClick={props.onTrain}
            >
              Train…
            </button>
          )}
      {action('deployment', 'Deploy', DEPLOY_WHAT)}
      <MakeServerless module={props.module} needs={props.form?.needs} api={props.api} />
    </div>
  );
}

export function ModuleDetail(props: IModuleDetailProps): JSX.Element {
  const [attempt, setAttempt] = React.useState(0);
  const [dialog, setDialog] = React.useState<Deployments.Kind | null>(null);
  const [started, setStarted] = React.useState<Deployments.IDeployment | null>(null);
  const [training, setTraining] = React.useState(false);
  const [trainingRun, setTrainingRun] = React.useState<Pipelines.IRun | null>(null);
  const [checked, setChecked] = React.useState<Checks.IRun | null>(null);
  const { api, id, onChecked } = props;
  const checks = React.useMemo(() => checksOf(api), [api]); // one object: its calls are polled
  const publishing = React.useMemo(() => publishingOf(api), [api]);
  // both at once: the description shows while the hardware check is still running
  const module = useFetched(signal => api.module(id, signal), [api, id, attempt]);
  const form = useFetched(signal => api.moduleForm(id, signal), [api, id, attempt]);
  const retry = () => setAttempt(a => a + 1);
  const m = module.value;
  const links = safeLinks(m?.metadata.links);
  const trainingNeeds = m?.metadata.resources?.training;
  const runPipeline = props.api.runPipeline;
  const canTrain = Boolean(m?.trained === false && m.retrain && runPipeline);
  const badge = (checked && badgeOf(checked)) ?? m?.check;
  const ended = React.useCallback(
    (run: Checks.IRun) => {
      setChecked(run);
      onChecked?.(run);
    },
    [onChecked]
  );
  const { onTitle } = props;
  React.useEffect(() => {
    if (m && onTitle) {
      onTitle(m.title);
    }
  }, [m?.title, onTitle]);

  return (
    <article className="jp-ReefLab-detail" aria-label={m ? m.title : 'Module'}>
      {props.onBack && (
        <button type="button" className="jp-ReefLab-back" onClick={props.onBack}>
          <caretLeftIcon.react tag="span" className="jp-ReefLab-caret" />
          Back to results
        </button>
      )}
      {!m && !module.error && <Loading>Loading the module…</Loading>}
      {module.error && <ErrorNotice message={module.error} onRetry={retry} />}
      {m && (
        <>
          <header className="jp-ReefLab-detailHeader">
            <h3 className="jp-ReefLab-detailTitle">{m.title}</h3>
            <div className="jp-ReefLab-badges">
              <SourceBadge source={m.source} />
              {!m.valid && <InvalidBadge />}
              {m.trained === false && <UntrainedBadge />}
              {badge && <CheckBadge badge={badge} link />}
              <FacetBadges card={m} facets={['tasks', 'data-type', 'libraries']} />
            </div>
            {m.summary && <p className="jp-ReefLab-summary">{m.summary}</p>}
          </header>

          {m.trained === false && (
            <div className="jp-ReefLab-info" role="note">
              <strong>No trained weights: train it first.</strong>{' '}
              {canTrain
                ? 'Train… runs the retraining pipeline; what it trains appears in the marketplace, ready to try.'
                : 'Its description says how to train it.'}
            </div>
          )}
          {training && runPipeline ? (
            <RunPipelineForm
              api={{ runPipeline }}
              initialPath={RETRAIN_PIPELINE}
              initialParameters={retrainParameters(m)}
              onStarted={run => {
                setTraining(false);
                setTrainingRun(run);
              }}
              onCancel={() => setTraining(false)}
            />
          ) : dialog && form.value ? (
            <DeployDialog
              form={form.value}
              kind={dialog}
              api={props.api}
              onCancel={() => setDialog(null)}
              onCreated={deployment => {
                setDialog(null);
                setStarted(deployment);
                props.onDeployed?.(deployment);
              }}
            />
          ) : (
            <DeployActions
              module={m}
              form={form.value}
              api={props.api}
              onOpen={kind => {
                setStarted(null);
                setDialog(kind);
              }}
              onTrain={
                canTrain
                  ? () => {
                      setTrainingRun(null);
                      setTraining(true);
                    }
                  : undefined
              }
            />
          )}
          {started && (
            <div className="jp-ReefLab-info" role="status">
              {started.kind === 'try' ? 'Your try of' : 'Your deployment of'} {started.title} is starting: follow it
              under Deployments.
            </div>
          )}

          {trainingRun && (
            <div className="jp-ReefLab-info" role="status">
              Training started ({trainingRun.title}): follow it under Jobs. When it passes its quality gate, the
              trained model appears in the marketplace under its MODEL_NAME.
            </div>
          )}

          {m.problems.length > 0 && (
            <div className="jp-ReefLab-problems" role="note">
              <h4>Problems in its metadata</h4>
              <ul>
                {m.problems.map((p, i) => (
                  <li key={i}>
                    <code>{problemField(p.field)}</code>: {p.message}
                  </li>
                ))}
              </ul>
            </div>
          )}

          <h4>Description</h4>
          {m.metadata.description ? (
            <Markdown source={String(m.metadata.description)} rendermime={props.rendermime} />
          ) : (
            <p className="jp-ReefLab-muted">The authors gave no description.</p>
          )}

          <h4>Hardware</h4>
          {!form.value && !form.error && <Loading>Checking which hardware fits…</Loading>}
          {form.error && <ErrorNotice message={form.error} onRetry={retry} />}
          {form.value && <HardwareForm form={form.value} valid={m.valid} source={m.source} />}
          {trainingNeeds && (
            <p>
              <span className="jp-ReefLab-label">Needs for training: </span>
              {describeNeeds(trainingNeeds)}
            </p>
          )}

          {checks && (
            <>
              <h4>Checks</h4>
              <ModuleChecks module={m} api={checks} publishing={publishing} onChecked={ended} />
            </>
          )}

          {links.length > 0 && (
            <>
              <h4>Links</h4>
              <ul className="jp-ReefLab-links">
                {links.map(link => (
                  <li key={link.label}>
                    <a href={link.url} target="_blank" rel="noopener noreferrer" title={link.url}>
                      {link.label}
                      <launchIcon.react tag="span" className="jp-ReefLab-linkIcon" />
                    </a>
                  </li>
                ))}
              </ul>
            </>
          )}

          <h4>About</h4>
          <dl className="jp-ReefLab-facts">
            <dt>Id</dt>
            <dd>
              <code>{m.id}</code>
            </dd>
            {typeof m.metadata.license === 'string' && (
              <>
                <dt>License</dt>
                <dd>{m.metadata.license}</dd>
              </>
            )}
            {m.updated && (
              <>
                <dt>Updated</dt>
                <dd>{m.updated}</dd>
              </>
            )}
            {m.versions.length > 0 && (
              <>
                <dt>Versions</dt>
                <dd>{m.versions.join(', ')}</dd>
              </>
            )}
          </dl>
        </>
      )}
    </article>
  );
}
