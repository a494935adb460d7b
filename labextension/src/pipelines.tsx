/** Your pipeline runs (Elyra .pipeline files, each node a notebook): run one, watch its steps, logs, cancel. */
import * as React from 'react';

import { ActionStatus, CancelOrRemove, FormEnd, useAction } from './actions';
import { Pipelines, PipelinesAPI, ReefLab, serverURL } from './api';
import { ErrorNotice } from './notice';
import { PolledLog } from './logsViewer';
import { JOB_STATE_WORDS, newestFirstByCreated } from './panelState';
import {
  describeNode,
  nodeProblem,
  onPipelineRunRequest,
  parseParameters,
  pipelinePathProblem,
  pipelinesInterval,
  runActive,
  summarizeRun
} from './pipelinesState';
import { PolledList } from './polledList';
import { usePolled, without } from './usePolled';

/** The last lines of the run's log, or of one node's, asked again every 2 s while the run goes on. */
function RunLog(props: { api: PipelinesAPI; run: Pipelines.IRun; node: Pipelines.INode | null }): JSX.Element {
  const { api, run, node } = props;
  const nodeId = node?.id ?? null;
  const fetch = React.useCallback(
    (signal: AbortSignal) => api.pipelineLog(run.id, nodeId, 200, signal),
    [api, run.id, nodeId]
  );
  const name = node ? `step ${node.label}` : run.title;
  return <PolledLog name={name} active={runActive(run)} fetch={fetch} empty="The log is empty (so far)." />;
}

/** The steps of a run in order, each a chip with its state; a chip opens that step's log. */
function NodeChips(props: {
  run: Pipelines.IRun;
  selected: string | null;
  onSelect: (id: string) => void;
}): JSX.Element {
  return (
    <ol className="jp-ReefLab-nodes" aria-label={`Steps of ${props.run.title}`}>
      {props.run.nodes.map(node => (
        <li key={node.id} aria-label={node.label} className={`jp-ReefLab-node jp-mod-node-${node.state}`}>
          <button
            type="button"
            className="jp-ReefLab-nodeButton"
            aria-pressed={props.selected === node.id}
            title={`${node.filename}: show this step's log`}
            onClick={() => props.onSelect(node.id)}
          >
            {node.state === 'running' && <span className="jp-ReefLab-spinner" aria-hidden="true" />}
            <strong>{node.label}</strong> <span className="jp-ReefLab-nodeState">{describeNode(node)}</span>
          </button>
        </li>
      ))}
    </ol>
  );
}

function RunRow(props: {
  run: Pipelines.IRun;
  api: PipelinesAPI;
  onChanged: (run: Pipelines.IRun) => void;
  onDeleted: (id: string) => void;
}): JSX.Element {
  const { run, api } = props;
  // null: no log; 'run': the run's own; else a node's id
  const [log, setLog] = React.useState<string | null>(null);
  const action = useAction();
  const active = runActive(run);
  const problems = run.nodes.map(nodeProblem).filter((p): p is string => p !== null);
  const reason = run.state === 'failed' && !problems.length ? run.reason : null;
  const toggle = (which: string) => setLog(current => (current === which ? null : which));
  const node = log && log !== 'run' ? (run.nodes.find(n => n.id === log) ?? null) : null;
  return (
    <li className={`jp-ReefLab-deployment jp-ReefLab-pipelineRun jp-mod-job-${run.state}`} aria-label={run.title}>
      <div className="jp-ReefLab-deploymentHead">
        <span className={`jp-ReefLab-state jp-mod-job-${run.state}`}>
          {active && <span className="jp-ReefLab-spinner" aria-hidden="true" />}
          {JOB_STATE_WORDS[run.state]}
        </span>
        <strong className="jp-ReefLab-deploymentTitle">{run.title}</strong>
      </div>
      <div className="jp-ReefLab-muted">
        {run.pipeline} · {run.profile}
        {summarizeRun(run) && <> · {summarizeRun(run)}</>}
      </div>
      <NodeChips run={run} selected={node?.id ?? null} onSelect={toggle} />
      {(problems.length > 0 || reason) && (
        <pre className="jp-ReefLab-reason jp-mod-failed" aria-label="Why">
          {[...problems, ...(reason ? [reason] : [])].join('\n')}
        </pre>
      )}
      <div className="jp-ReefLab-rowActions">
        <button type="button" className="jp-ReefLab-button" aria-expanded={log === 'run'} onClick={() => toggle('run')}>
          Log
        </button>
        <CancelOrRemove
          active={active}
          action={action}
          removeTitle="Forget this run (its executed notebooks stay in your files)"
          cancel={() => api.cancelPipelineRun(run.id).then(props.onChanged)}
          remove={() => api.deletePipelineRun(run.id).then(() => props.onDeleted(run.id))}
        />
        <a className="jp-ReefLab-button" href={serverURL(run.output_url)} target="_blank" rel="noopener noreferrer">
          Executed notebooks
        </a>
        {node?.output && (
          <a
            className="jp-ReefLab-button"
            href={serverURL(`lab/tree/${node.output}`)}
            target="_blank"
            rel="noopener noreferrer"
          >
            {node.label}'s notebook
          </a>
        )}
      </div>
      <ActionStatus action={action} />
      {log && <RunLog key={log} api={api} run={run} node={node} />}
    </li>
  );
}

/** Run a .pipeline file with parameters (NAME=value lines: the pipeline's environment variables). */
export function RunPipelineForm(props: {
  api: Pick<PipelinesAPI, 'runPipeline'>;
  initialPath?: string;
  /** NAME=value lines the form starts with */
  initialParameters?: string;
  onStarted: (run: Pipelines.IRun) => void;
  onCancel: () => void;
}): JSX.Element {
  const [path, setPath] = React.useState(props.initialPath ?? '');
  const [text, setText] = React.useState(props.initialParameters ?? '');
  const [touched, setTouched] = React.useState(false);
  const action = useAction();
  React.useEffect(() => {
    if (props.initialPath) {
      setPath(props.initialPath);
    }
  }, [props.initialPath]);
  const { parameters, problem: parameterProblem } = parseParameters(text);
  const problem = pipelinePathProblem(path) ?? parameterProblem;
  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    setTouched(true);
    if (problem) {
      return;
    }
    action.run('Starting the pipeline…', () =>
      props.api.runPipeline({ pipeline: path.trim(), parameters }).then(props.onStarted)
    );
  };
  return (
    <form className="jp-ReefLab-form" aria-label="Run a pipeline" onSubmit={submit}>
      <label className="jp-ReefLab-field">
        <span>Pipeline file</span>
        <input
          className="jp-mod-styled"
          value={path}
          placeholder="e.g. notebooks/detect_classify.pipeline"
          onChange={e => setPath(e.currentTarget.value)}
        />
      </label>
      <label className="jp-ReefLab-field">
        <span>Parameters</span>
        <textarea
          className="jp-mod-styled"
          rows={3}
          value={text}
          placeholder={'one a line, e.g.\nIMAGES_DIR=photos\nMIN_CONFIDENCE=0.5'}
          onChange={e => setText(e.currentTarget.value)}
        />
      </label>
      <p className="jp-ReefLab-muted">
        Parameters left out keep the values set in the pipeline editor. Each step runs as a notebook in its own
        folder: relative paths start there.
      </p>
      <FormEnd problem={touched && problem} action={action} submit="Run" onCancel={props.onCancel} />
    </form>
  );
}

/** What a refresh of the examples did, in words. */
export function describeExamples(report: ReefLab.IExamplesReport): string {
  const parts = [
    report.added.length ? `${report.added.length} added` : '',
    report.updated.length ? `${report.updated.length} updated to the latest` : '',
    report.kept.length ? `${report.kept.length} you changed kept as they are (${report.kept.join(', ')})` : ''
  ].filter(Boolean);
  return `Examples in ${report.folder}/: ${parts.length ? parts.join(', ') : 'already up to date'}.`;
}

/** Bring the examples in your files up to date (your edits stay, deleted ones come back). */
function ExamplesRefresh(props: { refresh: () => Promise<ReefLab.IExamplesReport> }): JSX.Element {
  const [said, setSaid] = React.useState<string | null>(null);
  const action = useAction();
  const refresh = () =>
    action.run('Refreshing the examples…', () => props.refresh().then(report => setSaid(describeExamples(report))));
  return (
    <>
      <button
        type="button"
        className="jp-ReefLab-button"
        disabled={action.busy !== null}
        title="Copy the latest example notebooks and pipelines into notebooks/ of your files; those you changed stay as they are"
        onClick={refresh}
      >
        Refresh examples
      </button>
      {said && (
        <p className="jp-ReefLab-muted" role="status">
          {said}
        </p>
      )}
      {action.error && <ErrorNotice message={action.error} />}
    </>
  );
}

export interface IPipelinesViewProps {
  api: PipelinesAPI;
  visible?: boolean;
  refreshKey?: number;
  /** refresh the examples in the user's files (the shipped pipelines among them) */
  refreshExamples?: () => Promise<ReefLab.IExamplesReport>;
}

export function PipelinesView(props: IPipelinesViewProps): JSX.Element {
  const { api } = props;
  const fetch = React.useCallback((signal: AbortSignal) => api.pipelineRuns(signal), [api]);
  const runs = usePolled(fetch, pipelinesInterval, props.visible ?? true, props.refreshKey);
  const [form, setForm] = React.useState<{ path: string } | null>(null);
  // "Run this pipeline" from a .pipeline file: open the form with its path
  React.useEffect(() => onPipelineRunRequest(path => setForm({ path })), []);
  const put = (run: Pipelines.IRun) => runs.set(current => (current ?? []).map(r => (r.id === run.id ? run : r)));
  return (
    <div className="jp-ReefLab-pipelines">
      <PolledList
        polled={runs}
        sort={newestFirstByCreated}
        label="Your pipeline runs"
        loading="Loading your pipeline runs…"
        empty={
          !form && (
            <>
              No pipeline runs yet. Try the example <code>notebooks/detect_classify.pipeline</code>, or make one with
              the Elyra editor (notebooks linked in order) and run it here.
            </>
          )
        }
      >
        {run => (
          <RunRow
            key={run.id}
            run={run}
            api={api}
            onChanged={put}
            onDeleted={id => runs.set(without(r => r.id === id))}
          />
        )}
      </PolledList>
      {form ? (
        <RunPipelineForm
          api={api}
          initialPath={form.path}
          onCancel={() => setForm(null)}
          onStarted={run => {
            setForm(null);
            runs.set(current => [run, ...(current ?? []).filter(r => r.id !== run.id)]);
            runs.refresh();
          }}
        />
      ) : (
        <div className="jp-ReefLab-rowActions">
          <button type="button" className="jp-ReefLab-button" onClick={() => setForm({ path: '' })}>
            Run pipeline
          </button>
          {props.refreshExamples && <ExamplesRefresh refresh={props.refreshExamples} />}
        </div>
      )}
    </div>
  );
}
