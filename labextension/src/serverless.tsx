/**
 * Your serverless services: invoke one with a file, upload files to its input folder, its jobs with status, logs
 * and results (previewed as Try shows them), and batch runs with progress.
 */
import * as React from 'react';

import { ActionStatus, ConfirmDelete, useAction } from './actions';
import { errorMessage, fileToBase64, Serverless, ServerlessAPI, Storage } from './api';
import { ErrorNotice, Loading } from './notice';
import {
  Answer,
  batchActive,
  batchInterval,
  batchPercent,
  batchWords,
  decodeAnswer,
  JOB_WORDS,
  newestJobs,
  SLOW_MS
} from './panelState';
import {
  checkBatch,
  chooseBatchService,
  describeMemory,
  firstPath,
  IBatchForm,
  initialBatchForm,
  isImageName,
  jobTitle,
  pathInBucket,
  toBatchRequest
} from './serverlessForm';
import { ServiceMetrics } from './serverlessMetrics';
import { ResultPreview } from './serverlessResult';
import { PolledList } from './polledList';
import { IFetched, useFetched, usePolled, without } from './usePolled';

const MODULE_VAR = 'REEFLAB_MODULE';
/** how long the jobs list is asked every second after an upload (the upload's job shows up in that time) */
const AFTER_UPLOAD_MS = 30000;

function moduleOf(service: Serverless.IService): string | null {
  return service.environment?.variables?.[MODULE_VAR] ?? null;
}

/** Send one file to a service and show what it answered. */
function Invoke(props: { api: ServerlessAPI; service: string }): JSX.Element {
  const [file, setFile] = React.useState<File | null>(null);
  const [answer, setAnswer] = React.useState<Answer | null>(null);
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const controller = React.useRef<AbortController | null>(null);
  React.useEffect(() => () => controller.current?.abort(), []);

  const send = () => {
    if (!file) {
      return;
    }
    controller.current?.abort();
    const mine = (controller.current = new AbortController());
    setBusy(true);
    setError(null);
    setAnswer(null);
    props.api.invoke(props.service, file, mine.signal).then(
      body => {
        if (!mine.signal.aborted) {
          setAnswer(decodeAnswer(body));
          setBusy(false);
        }
      },
      e => {
        if (!mine.signal.aborted) {
          setError(errorMessage(e));
          setBusy(false);
        }
      }
    );
  };

  return (
    <div className="jp-ReefLab-invoke" role="region" aria-label={`Invoke ${props.service}`}>
      <label className="jp-ReefLab-field">
        <span>A file to send</span>
        <input
          type="file"
          aria-label="File to send"
          onChange={e => {
            setFile(e.currentTarget.files?.[0] ?? null);
            setAnswer(null);
          }}
        />
      </label>
      <button type="button" className="jp-ReefLab-button jp-mod-accept" disabled={!file || busy} onClick={send}>
        Invoke
      </button>
      {busy && <Loading>Waiting for {props.service} (a cold start loads the model first)…</Loading>}
      {error && <ErrorNotice message={error} onRetry={send} />}
      {answer && file && (
        <ResultPreview answer={answer} file={file.name} image={isImageName(file.name) ? file : null} />
      )}
    </div>
  );
}

/** A file of the user's platform storage ('bucket/key'), fetched when it is in their bucket; null elsewhere. */
function useStored(
  api: ServerlessAPI,
  storage: Storage.IConnection | null,
  path: string | null | undefined
): IFetched<Blob> {
  const inside = path ? pathInBucket(path, storage?.bucket) : null;
  const fetch = storage && inside !== null ? (signal: AbortSignal) => api.downloadFile(storage.name, inside, signal) : null;
  return useFetched(fetch, [api, storage?.name, inside]);
}

/** A succeeded job's result from its output folder, previewed on its input image when it found things there. */
function JobResult(props: {
  api: ServerlessAPI;
  storage: Storage.IConnection | null;
  job: Serverless.IJob;
}): JSX.Element {
  const { api, storage, job } = props;
  const output = job.outputs?.[0] ?? null;
  const result = useStored(api, storage, output);
  const image = useStored(api, storage, job.input && isImageName(job.input) ? job.input : null);
  const [answer, setAnswer] = React.useState<Answer | null>(null);
  React.useEffect(() => {
    setAnswer(null);
    if (result.value) {
      let live = true;
      fileToBase64(result.value).then(text => live && setAnswer(decodeAnswer(text)));
      return () => {
        live = false;
      };
    }
  }, [result.value]);
  if (!output) {
    return <p className="jp-ReefLab-muted">No result file: the service has no output folder.</p>;
  }
  return (
    <div className="jp-ReefLab-jobResult">
      <p className="jp-ReefLab-muted">Result in {output}</p>
      {result.error && <ErrorNotice message={result.error} />}
      {(!result.done || !image.done) && <Loading>Loading the result…</Loading>}
      {answer && image.done && <ResultPreview answer={answer} file={jobTitle(job)} image={image.value} />}
    </div>
  );
}

/** A job's log, and its result once it succeeded. */
function JobDetails(props: {
  api: ServerlessAPI;
  service: string;
  storage: Storage.IConnection | null;
  job: Serverless.IJob;
}): JSX.Element {
  const { api, service, job } = props;
  const log = useFetched(signal => api.jobLog(service, job.name, signal), [api, service, job.name, job.status]);
  return (
    <div className="jp-ReefLab-jobDetails">
      {job.status === 'Succeeded' && <JobResult api={api} storage={props.storage} job={job} />}
      <div className="jp-ReefLab-logs" role="region" aria-label={`Log of ${job.name}`}>
        {log.error && <ErrorNotice message={log.error} />}
        {log.value === null && !log.error && <Loading>Loading the log…</Loading>}
        {log.value !== null && <pre tabIndex={0}>{log.value || 'The log is empty.'}</pre>}
      </div>
    </div>
  );
}

/** Files from the user's computer into the service's input folder: each starts a job. */
function UploadToInput(props: {
  api: ServerlessAPI;
  storage: Storage.IConnection;
  input: string;
  inside: string;
  onUploaded: () => void;
}): JSX.Element {
  const { api, storage } = props;
  const [busy, setBusy] = React.useState<string | null>(null);
  const [done, setDone] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const upload = async (files: File[]) => {
    setError(null);
    setDone(null);
    const sent: string[] = [];
    for (const file of files) {
      setBusy(`Uploading ${file.name} to ${props.input}…`);
      try {
        await api.uploadFile(storage.name, `${props.inside}/${file.name}`, file);
        sent.push(file.name);
        props.onUploaded();
      } catch (e) {
        setError(`${file.name}: ${errorMessage(e)}`);
        break;
      }
    }
    setBusy(null);
    if (sent.length) {
      const start = sent.length > 1 ? 'their jobs start' : 'its job starts';
      setDone(`Uploaded ${sent.join(', ')} to ${props.input}: ${start} in a moment.`);
    }
  };
  return (
    <div className="jp-ReefLab-upload">
      <label className="jp-ReefLab-button">
        Upload files…
        <input
          type="file"
          multiple
          hidden
          aria-label={`Files to upload to ${props.input}`}
          disabled={busy !== null}
          onChange={e => {
            const files = [...(e.currentTarget.files ?? [])];
            e.currentTarget.value = '';
            if (files.length) {
              void upload(files);
            }
          }}
        />
      </label>
      {busy && <Loading>{busy}</Loading>}
      {done && (
        <p className="jp-ReefLab-muted" role="status">
          {done}
        </p>
      )}
      {error && <ErrorNotice message={error} />}
    </div>
  );
}

/** A service's jobs (asynchronous runs, e.g. from uploads), newest first, by file name; details on demand. */
function ServiceJobs(props: {
  api: ServerlessAPI;
  service: Serverless.IService;
  storage: Storage.IConnection | null;
}): JSX.Element {
  const { api, storage } = props;
  const service = props.service.name;
  const input = firstPath(props.service, 'input');
  const inside = input ? pathInBucket(input, storage?.bucket) : null;
  const fastUntil = React.useRef(0);
  const fetch = React.useCallback((signal: AbortSignal) => api.serviceJobs(service, signal), [api, service]);
  const jobs = usePolled(
    fetch,
    list =>
      list?.some(j => j.status === 'Pending' || j.status === 'Running')
        ? 2000
        : Date.now() < fastUntil.current
          ? 1000
          : SLOW_MS,
    true
  );
  const [open, setOpen] = React.useState<string | null>(null);
  const list = jobs.value ? newestJobs(jobs.value) : null;
  return (
    <div className="jp-ReefLab-serviceJobs" role="region" aria-label={`Jobs of ${service}`}>
      {input && storage && inside !== null && (
        <UploadToInput
          api={api}
          storage={storage}
          input={input}
          inside={inside}
          onUploaded={() => {
            fastUntil.current = Date.now() + AFTER_UPLOAD_MS;
            jobs.refresh();
          }}
        />
      )}
      {jobs.error && <ErrorNotice message={jobs.error} onRetry={jobs.refresh} />}
      {!list && !jobs.error && <Loading>Loading its jobs…</Loading>}
      {list?.length === 0 && (
        <p className="jp-ReefLab-muted">
          {input
            ? `No jobs yet: each file uploaded to ${input} starts one.`
            : 'No jobs yet. It has no input folder: its jobs come from code or batches (Invoke answers at once).'}
        </p>
      )}
      {list && list.length > 0 && (
        <ul className="jp-ReefLab-jobList">
          {list.map(job => (
            <li key={job.name}>
              <button
                type="button"
                className="jp-ReefLab-fileButton"
                aria-expanded={open === job.name}
                title={job.name}
                onClick={() => setOpen(open === job.name ? null : job.name)}
              >
                <span className={`jp-ReefLab-state jp-mod-job-${job.status.toLowerCase()}`}>
                  {JOB_WORDS[job.status] ?? job.status}
                </span>
                <span className="jp-ReefLab-fileName">{jobTitle(job)}</span>
              </button>
              {open === job.name && <JobDetails api={api} service={service} storage={storage} job={job} />}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

type Open = 'invoke' | 'jobs' | 'metrics' | null;

/** Where a service takes files from and puts results, in words. */
function folderWords(service: Serverless.IService): string {
  const input = firstPath(service, 'input');
  const output = firstPath(service, 'output');
  const from = input
    ? `Each file uploaded to ${input} starts a job`
    : 'No input folder: call it with Invoke, code or batches';
  return output ? `${from}; results go to ${output}.` : `${from}; no output folder.`;
}

function ServiceRow(props: {
  service: Serverless.IService;
  api: ServerlessAPI;
  storage: Storage.IConnection | null;
  onDeleted: (name: string) => void;
}): JSX.Element {
  const { service: s, api } = props;
  const [open, setOpen] = React.useState<Open>(null);
  const [confirming, setConfirming] = React.useState(false);
  const action = useAction();
  const busy = action.busy !== null;
  const module = moduleOf(s);
  const toggle = (what: Open) => setOpen(open === what ? null : what);
  const remove = () => action.run('Deleting…', () => api.deleteService(s.name).then(() => props.onDeleted(s.name)));
  return (
    <li className="jp-ReefLab-deployment jp-ReefLab-service" aria-label={s.name} data-service={s.name}>
      <div className="jp-ReefLab-deploymentHead">
        <strong className="jp-ReefLab-deploymentTitle">{s.name}</strong>
        {module && <span className="jp-ReefLab-badge">{module}</span>}
      </div>
      <div className="jp-ReefLab-muted">
        {[s.cpu && `${s.cpu} CPU`, describeMemory(s.memory)].filter(Boolean).join(' · ')}
      </div>
      <div className="jp-ReefLab-muted jp-ReefLab-folderWords">{folderWords(s)}</div>
      <div className="jp-ReefLab-rowActions">
        <button
          type="button"
          className="jp-ReefLab-button"
          aria-expanded={open === 'invoke'}
          onClick={() => toggle('invoke')}
        >
          Invoke
        </button>
        <button type="button" className="jp-ReefLab-button" aria-expanded={open === 'jobs'} onClick={() => toggle('jobs')}>
          Jobs
        </button>
        <button
          type="button"
          className="jp-ReefLab-button"
          aria-expanded={open === 'metrics'}
          onClick={() => toggle('metrics')}
        >
          Metrics
        </button>
        <button type="button" className="jp-ReefLab-button" disabled={busy} onClick={() => setConfirming(true)}>
          Delete
        </button>
      </div>
      {confirming && (
        <ConfirmDelete name={s.name} busy={busy} onDelete={remove} onKeep={() => setConfirming(false)}>
          Delete the service <strong>{s.name}</strong>? It stops answering; its results in storage stay.
        </ConfirmDelete>
      )}
      <ActionStatus action={action} />
      {open === 'invoke' && <Invoke api={api} service={s.name} />}
      {open === 'jobs' && <ServiceJobs api={api} service={s} storage={props.storage} />}
      {open === 'metrics' && <ServiceMetrics api={api} service={s.name} />}
    </li>
  );
}

function BatchRow(props: {
  batch: Serverless.IBatch;
  api: ServerlessAPI;
  onRemoved: (id: string) => void;
}): JSX.Element {
  const { batch, api } = props;
  const percent = batchPercent(batch);
  const action = useAction();
  const remove = () => action.run('Removing…', () => api.deleteBatch(batch.id).then(() => props.onRemoved(batch.id)));
  return (
    <li
      className={`jp-ReefLab-deployment jp-ReefLab-batch jp-mod-batch-${batch.status}`}
      aria-label={`Batch ${batch.id}`}
    >
      <div className="jp-ReefLab-deploymentHead">
        <span className={`jp-ReefLab-state jp-mod-batch-${batch.status}`}>{batch.status}</span>
        <strong className="jp-ReefLab-deploymentTitle">{batch.service}</strong>
        <span className="jp-ReefLab-muted">{batch.inputs}</span>
      </div>
      <progress
        className="jp-ReefLab-progress"
        max={100}
        value={percent ?? undefined}
        aria-label={`Progress of batch ${batch.id}`}
      />
      <div className="jp-ReefLab-muted" role={batchActive(batch) ? 'status' : undefined}>
        {batchWords(batch)}
      </div>
      {batch.output && <div className="jp-ReefLab-muted">Results in {batch.output}</div>}
      {batch.failed.length > 0 && (
        <details>
          <summary>{batch.failed.length} files failed</summary>
          <ul>
            {batch.failed.slice(0, 20).map((f, i) => (
              <li key={i}>{Object.values(f).join(': ')}</li>
            ))}
          </ul>
        </details>
      )}
      {!batchActive(batch) && (
        <div className="jp-ReefLab-rowActions">
          <button
            type="button"
            className="jp-ReefLab-button"
            disabled={action.busy !== null}
            title={`Forget this batch${batch.output ? ` (its results stay in ${batch.output})` : ''}`}
            onClick={remove}
          >
            Remove
          </button>
        </div>
      )}
      {action.error && <ErrorNotice message={action.error} />}
    </li>
  );
}

/** Start a batch: every file under a bucket/folder through one service, results into a folder. */
function StartBatch(props: {
  api: ServerlessAPI;
  services: Serverless.IService[];
  onStarted: (batch: Serverless.IBatch) => void;
  onCancel: () => void;
}): JSX.Element {
  const [state, setState] = React.useState<IBatchForm>(() => initialBatchForm(props.services));
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const update = (change: Partial<IBatchForm>) => {
    setState(s => ({ ...s, ...change }));
    setError(null);
  };
  const start = (event: React.FormEvent) => {
    event.preventDefault();
    const problem = checkBatch(state);
    if (problem) {
      setError(problem);
      return;
    }
    setBusy(true);
    setError(null);
    props.api.startBatch(toBatchRequest(state)).then(
      batch => {
        setBusy(false);
        props.onStarted(batch);
      },
      e => {
        setBusy(false);
        setError(errorMessage(e));
      }
    );
  };
  const chosen = props.services.find(s => s.name === state.service);
  return (
    <form className="jp-ReefLab-form" aria-label="Start a batch" onSubmit={start}>
      <label className="jp-ReefLab-field">
        <span>Service</span>
        <select
          className="jp-mod-styled"
          value={state.service}
          onChange={e => {
            const next = props.services.find(s => s.name === e.currentTarget.value);
            if (next) {
              setState(s => chooseBatchService(s, next));
              setError(null);
            }
          }}
        >
          {props.services.map(s => (
            <option key={s.name} value={s.name}>
              {s.name}
            </option>
          ))}
        </select>
      </label>
      <label className="jp-ReefLab-field">
        <span>Files in (bucket/folder)</span>
        <input
          className="jp-mod-styled"
          value={state.inputs}
          placeholder="e.g. ana/survey-2024"
          spellCheck={false}
          onChange={e => update({ inputs: e.currentTarget.value })}
        />
      </label>
      <label className="jp-ReefLab-field">
        <span>Results to (bucket/folder)</span>
        <input
          className="jp-mod-styled"
          value={state.output}
          spellCheck={false}
          onChange={e => update({ output: e.currentTarget.value, outputTyped: true })}
        />
        <span className="jp-ReefLab-muted">
          {chosen && firstPath(chosen, 'output')
            ? `Pre-filled with ${chosen.name}'s output folder.`
            : `${state.service || 'This service'} has no output folder: give one.`}
        </span>
      </label>
      {error && <ErrorNotice message={error} />}
      <div className="jp-ReefLab-dialogButtons">
        <button type="button" className="jp-ReefLab-button" onClick={props.onCancel} disabled={busy}>
          Cancel
        </button>
        <button type="submit" className="jp-ReefLab-button jp-mod-accept" disabled={busy || !props.services.length}>
          Start the batch
        </button>
      </div>
      {busy && <Loading>Starting…</Loading>}
    </form>
  );
}

export interface IServerlessViewProps {
  api: ServerlessAPI;
  visible?: boolean;
  refreshKey?: number;
}

export function ServerlessView(props: IServerlessViewProps): JSX.Element {
  const { api } = props;
  const visible = props.visible ?? true;
  const [attempt, setAttempt] = React.useState(0);
  const check = useFetched(() => api.serverlessAvailability(), [api, attempt]);
  const availability = check.value;
  const [batching, setBatching] = React.useState(false);
  const on = visible && availability?.available === true;
  const fetchServices = React.useCallback((signal: AbortSignal) => api.services(signal), [api]);
  const services = usePolled(fetchServices, () => SLOW_MS * 2, on, props.refreshKey);
  const fetchBatches = React.useCallback((signal: AbortSignal) => api.batches(signal), [api]);
  const batches = usePolled(fetchBatches, batchInterval, on, props.refreshKey);
  const [storage, setStorage] = React.useState<Storage.IConnection | null>(null);
  React.useEffect(() => {
    if (!on) {
      return;
    }
    const controller = new AbortController();
    // the user's own bucket: services' folders there get uploads and result previews (quiet if none)
    api.platformStorage(controller.signal).then(
      found => !controller.signal.aborted && setStorage(found),
      () => undefined
    );
    return () => controller.abort();
  }, [api, on]);

  if (check.error) {
    return <ErrorNotice message={check.error} onRetry={() => setAttempt(a => a + 1)} />;
  }
  if (!availability) {
    return <Loading>Looking for the serverless engine…</Loading>;
  }
  if (!availability.available) {
    return (
      <p className="jp-ReefLab-muted" role="note">
        Serverless is not set up on this server: {availability.reason}
      </p>
    );
  }
  const list = services.value;
  return (
    <div className="jp-ReefLab-serverless">
      <PolledList
        polled={services}
        label="Your serverless services"
        loading="Loading your services…"
        empty="No services yet. Open a module in the Marketplace and choose Make serverless."
      >
        {s => (
          <ServiceRow
            key={s.name}
            service={s}
            api={api}
            storage={storage}
            onDeleted={name => services.set(without(x => x.name === name))}
          />
        )}
      </PolledList>
      <h4>Batches</h4>
      <PolledList
        polled={batches}
        label="Your batches"
        empty={!batching && 'No batches yet: run a service over every file of a folder.'}
      >
        {b => (
          <BatchRow
            key={b.id}
            batch={b}
            api={api}
            onRemoved={id => batches.set(without(x => x.id === id))}
          />
        )}
      </PolledList>
      {batching ? (
        <StartBatch
          api={api}
          services={list ?? []}
          onStarted={batch => {
            setBatching(false);
            batches.set(current => [batch, ...(current ?? []).filter(b => b.id !== batch.id)]);
            batches.refresh();
          }}
          onCancel={() => setBatching(false)}
        />
      ) : (
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={!list?.length}
          title={list?.length ? 'Run a service over every file of a folder' : 'Make a service first'}
          onClick={() => setBatching(true)}
        >
          New batch
        </button>
      )}
    </div>
  );
}
