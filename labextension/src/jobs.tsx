/**
 * Your pipeline runs (per-step status, logs, cancel), notebook jobs (papermill runs) with live progress,
 * logs, cancel and output, and your MLflow runs.
 */
import { launchIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ActionStatus, CancelOrRemove, useAction } from './actions';
import { Jobs, JobsAPI, PipelinesAPI, serverURL } from './api';
import {
  describeFailure,
  describeProgress,
  JOB_STATE_WORDS,
  jobActive,
  jobsInterval,
  newestFirstByCreated,
  rankCount,
  SLOW_MS
} from './panelState';
import { PolledLog } from './logsViewer';
import { PipelinesView } from './pipelines';
import { PolledList } from './polledList';
import { usePolled, without } from './usePolled';

/** The last lines of a job's log (or of one rank's, for a distributed job), asked again every 2 s while it runs. */
function JobLog(props: { api: JobsAPI; job: Jobs.IJob }): JSX.Element {
  const { api, job } = props;
  const ranks = rankCount(job);
  const [rank, setRank] = React.useState<number | null>(typeof job.failed_rank === 'number' ? job.failed_rank : null);
  const fetch = React.useCallback(
    (signal: AbortSignal) => api.jobLog(job.id, 200, signal, undefined, rank),
    [api, job.id, rank]
  );
  return (
    <>
      {ranks > 0 && (
        <select
          className="jp-mod-styled"
          aria-label={`Log of ${job.title}`}
          value={rank === null ? 'job' : String(rank)}
          onChange={event => setRank(event.target.value === 'job' ? null : Number(event.target.value))}
        >
          <option value="job">Job (torchrun)</option>
          {Array.from({ length: ranks }, (_, r) => (
            <option key={r} value={String(r)}>
              Rank {r}
            </option>
          ))}
        </select>
      )}
      <PolledLog
        key={rank ?? 'job'}
        name={job.title}
        active={jobActive(job)}
        fetch={fetch}
        empty="The log is empty."
      />
    </>
  );
}

function JobRow(props: {
  job: Jobs.IJob;
  api: JobsAPI;
  onChanged: (job: Jobs.IJob) => void;
  onDeleted: (id: string) => void;
}): JSX.Element {
  const { job, api } = props;
  const [logs, setLogs] = React.useState(false);
  const action = useAction();
  const active = jobActive(job);
  const progress = describeProgress(job);
  const failure = job.state === 'failed' ? describeFailure(job) : null;
  return (
    <li className={`jp-ReefLab-deployment jp-ReefLab-job jp-mod-job-${job.state}`} aria-label={job.title}>
      <div className="jp-ReefLab-deploymentHead">
        <span className={`jp-ReefLab-state jp-mod-job-${job.state}`}>
          {active && <span className="jp-ReefLab-spinner" aria-hidden="true" />}
          {JOB_STATE_WORDS[job.state]}
        </span>
        <strong className="jp-ReefLab-deploymentTitle">{job.title}</strong>
      </div>
      <div className="jp-ReefLab-muted">
        {job.notebook} · {job.profile}
        {rankCount(job) > 0 && ` · ${rankCount(job)} ranks`}
      </div>
      {active && job.progress.cells > 0 && (
        <>
          <progress
            className="jp-ReefLab-progress"
            max={job.progress.cells}
            value={Math.max(0, job.progress.cell - 1)}
            aria-label={`Progress of ${job.title}`}
          />
          <div className="jp-ReefLab-muted jp-ReefLab-location" role="status">
            {progress}
          </div>
        </>
      )}
      {failure && (
        <pre className="jp-ReefLab-reason jp-mod-failed" aria-label="Why">
          {failure}
        </pre>
      )}
      <div className="jp-ReefLab-rowActions">
        <button type="button" className="jp-ReefLab-button" aria-expanded={logs} onClick={() => setLogs(!logs)}>
          Logs
        </button>
        <CancelOrRemove
          active={active}
          action={action}
          removeTitle="Forget this job (its output notebook stays in your files)"
          cancel={() => api.cancelJob(job.id).then(props.onChanged)}
          remove={() => api.deleteJob(job.id).then(() => props.onDeleted(job.id))}
        />
        {job.state !== 'starting' && (
          <a className="jp-ReefLab-button" href={serverURL(job.output_url)} target="_blank" rel="noopener noreferrer">
            Output notebook
          </a>
        )}
      </div>
      <ActionStatus action={action} />
      {logs && <JobLog api={api} job={job} />}
    </li>
  );
}

/** Your latest MLflow runs, each a link to it in the MLflow UI; quiet when no tracking server is set up. */
function TrainingRuns(props: { api: JobsAPI; visible: boolean }): JSX.Element | null {
  const { api } = props;
  const fetch = React.useCallback((signal: AbortSignal) => api.trainingRuns(5, signal), [api]);
  const runs = usePolled(fetch, () => SLOW_MS * 2, props.visible);
  if (runs.error || !runs.value?.length) {
    return null;
  }
  return (
    <>
      <h4>Training runs (MLflow)</h4>
      <ul className="jp-ReefLab-links" aria-label="Your training runs">
        {runs.value.map(run => (
          <li key={run.id}>
            <a href={serverURL(run.path)} target="_blank" rel="noopener noreferrer" title={run.experiment}>
              {run.name || run.id}
              <launchIcon.react tag="span" className="jp-ReefLab-linkIcon" />
            </a>
            <span className="jp-ReefLab-muted"> · {run.status.toLowerCase()}</span>
          </li>
        ))}
      </ul>
    </>
  );
}

/** The pipeline calls, when the API given has them all (tests of notebook jobs alone give none). */
function pipelinesOf(api: JobsAPI): PipelinesAPI | null {
  const { pipelineRuns, runPipeline, cancelPipelineRun, deletePipelineRun, pipelineLog } = api;
  if (pipelineRuns && runPipeline && cancelPipelineRun && deletePipelineRun && pipelineLog) {
    return { pipelineRuns, runPipeline, cancelPipelineRun, deletePipelineRun, pipelineLog };
  }
  return null;
}

export interface IJobsViewProps {
  api: JobsAPI;
  visible?: boolean;
  refreshKey?: number;
}

export function JobsView(props: IJobsViewProps): JSX.Element {
  const { api } = props;
  const visible = props.visible ?? true;
  const fetch = React.useCallback((signal: AbortSignal) => api.jobs(signal), [api]);
  const jobs = usePolled(fetch, jobsInterval, visible, props.refreshKey);
  const put = (job: Jobs.IJob) => jobs.set(current => (current ?? []).map(j => (j.id === job.id ? job : j)));
  const pipelines = React.useMemo(() => pipelinesOf(api), [api]); // one object: its calls are polled
  return (
    <div className="jp-ReefLab-jobs">
      {pipelines && (
        <>
          <h4>Pipeline runs</h4>
          <PipelinesView
            api={pipelines}
            visible={visible}
            refreshKey={props.refreshKey}
            refreshExamples={api.refreshExamples}
          />
          <h4>Notebook jobs</h4>
        </>
      )}
      <PolledList
        polled={jobs}
        sort={newestFirstByCreated}
        label="Your jobs"
        loading="Loading your jobs…"
        empty={
          <>
            No jobs yet. Run a notebook as a job with <code>reeflab job run</code> or <code>reeflab.client.jobs</code>.
          </>
        }
      >
        {job => (
          <JobRow
            key={job.id}
            job={job}
            api={api}
            onChanged={put}
            onDeleted={id => jobs.set(without(j => j.id === id))}
          />
        )}
      </PolledList>
      <TrainingRuns api={api} visible={visible} />
    </div>
  );
}
