/** Your serverless services: invoke one with a file, its jobs with status and logs, and batch runs with progress. */
import * as React from 'react';

import { errorMessage, Serverless, ServerlessAPI } from './api';
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
  SLOW_MS,
  summarizeAnswer
} from './panelState';
import { usePolled } from './usePolled';

const MODULE_VAR = 'REEFLAB_MODULE';

function moduleOf(service: Serverless.IService): string | null {
  return service.environment?.variables?.[MODULE_VAR] ?? null;
}

function ShowAnswer(props: { answer: Answer; file: string }): JSX.Element {
  const { answer } = props;
  const [url, setUrl] = React.useState<string | null>(null);
  React.useEffect(() => {
    if (answer.kind !== 'image') {
      return;
    }
    const made = URL.createObjectURL(new Blob([answer.bytes], { type: answer.mime }));
    setUrl(made);
    return () => URL.revokeObjectURL(made);
  }, [answer]);
  if (answer.kind === 'image') {
    return url ? (
      <figure className="jp-ReefLab-annotated">
        <img src={url} alt={`The answer for ${props.file}`} />
        <figcaption className="jp-ReefLab-muted">The answer for {props.file}</figcaption>
      </figure>
    ) : (
      <></>
    );
  }
  const summary = answer.kind === 'json' ? summarizeAnswer(answer.value) : null;
  return (
    <div className="jp-ReefLab-answer" role="region" aria-label={`Answer for ${props.file}`}>
      {summary && <p className="jp-ReefLab-summary">{summary}</p>}
      <div className="jp-ReefLab-json">
        <pre tabIndex={0}>{answer.text}</pre>
      </div>
    </div>
  );
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
      {answer && file && <ShowAnswer answer={answer} file={file.name} />}
    </div>
  );
}

/** A service's jobs (asynchronous runs, e.g. from uploads), newest first; one's log on demand. */
function ServiceJobs(props: { api: ServerlessAPI; service: string }): JSX.Element {
  const { api, service } = props;
  const fetch = React.useCallback((signal: AbortSignal) => api.serviceJobs(service, signal), [api, service]);
  const jobs = usePolled(
    fetch,
    list => (list?.some(j => j.status === 'Pending' || j.status === 'Running') ? 2000 : SLOW_MS),
    true
  );
  const [open, setOpen] = React.useState<string | null>(null);
  const [log, setLog] = React.useState<{ text: string | null; error: string | null }>({ text: null, error: null });

  React.useEffect(() => {
    if (!open) {
      return;
    }
    const controller = new AbortController();
    setLog({ text: null, error: null });
    api.jobLog(service, open, controller.signal).then(
      text => !controller.signal.aborted && setLog({ text, error: null }),
      e => !controller.signal.aborted && setLog({ text: null, error: errorMessage(e) })
    );
    return () => controller.abort();
  }, [api, service, open]);

  const list = jobs.value ? newestJobs(jobs.value) : null;
  return (
    <div className="jp-ReefLab-serviceJobs" role="region" aria-label={`Jobs of ${service}`}>
      {jobs.error && <ErrorNotice message={jobs.error} onRetry={jobs.refresh} />}
      {!list && !jobs.error && <Loading>Loading its jobs…</Loading>}
      {list?.length === 0 && (
        <p className="jp-ReefLab-muted">No jobs yet: uploads to its input folder start one each.</p>
      )}
      {list && list.length > 0 && (
        <ul className="jp-ReefLab-jobList">
          {list.map(job => (
            <li key={job.name}>
              <button
                type="button"
                className="jp-ReefLab-fileButton"
                aria-expanded={open === job.name}
                onClick={() => setOpen(open === job.name ? null : job.name)}
              >
                <span className={`jp-ReefLab-state jp-mod-job-${job.status.toLowerCase()}`}>
                  {JOB_WORDS[job.status] ?? job.status}
                </span>
                <span className="jp-ReefLab-fileName">{job.name}</span>
              </button>
              {open === job.name && (
                <div className="jp-ReefLab-logs" role="region" aria-label={`Log of ${job.name}`}>
                  {log.error && <ErrorNotice message={log.error} />}
                  {log.text === null && !log.error && <Loading>Loading the log…</Loading>}
                  {log.text !== null && <pre tabIndex={0}>{log.text || 'The log is empty.'}</pre>}
                </div>
              )}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

type Open = 'invoke' | 'jobs' | null;

function ServiceRow(props: {
  service: Serverless.IService;
  api: ServerlessAPI;
  onDeleted: (name: string) => void;
}): JSX.Element {
  const { service: s, api } = props;
  const [open, setOpen] = React.useState<Open>(null);
  const [confirming, setConfirming] = React.useState(false);
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const module = moduleOf(s);
  const inputs = (s.input ?? []).map(i => i.path).filter(Boolean);
  const toggle = (what: Open) => setOpen(open === what ? null : what);
  const remove = () => {
    setBusy(true);
    setError(null);
    api.deleteService(s.name).then(
      () => props.onDeleted(s.name),
      e => {
        setBusy(false);
        setError(errorMessage(e));
      }
    );
  };
  return (
    <li className="jp-ReefLab-deployment jp-ReefLab-service" aria-label={s.name} data-service={s.name}>
      <div className="jp-ReefLab-deploymentHead">
        <strong className="jp-ReefLab-deploymentTitle">{s.name}</strong>
        {module && <span className="jp-ReefLab-badge">{module}</span>}
      </div>
      <div className="jp-ReefLab-muted">
        {[s.cpu && `${s.cpu} CPU`, s.memory].filter(Boolean).join(' · ')}
        {inputs.length > 0 && ` · runs on uploads to ${inputs.join(', ')}`}
      </div>
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
        <button type="button" className="jp-ReefLab-button" disabled={busy} onClick={() => setConfirming(true)}>
          Delete
        </button>
      </div>
      {confirming && (
        <div className="jp-ReefLab-confirm" role="alertdialog" aria-label={`Delete ${s.name}?`}>
          <span>
            Delete the service <strong>{s.name}</strong>? It stops answering; its results in storage stay.
          </span>
          <button type="button" className="jp-ReefLab-button jp-mod-warn" disabled={busy} onClick={remove}>
            Delete it
          </button>
          <button type="button" className="jp-ReefLab-button" onClick={() => setConfirming(false)}>
            Keep it
          </button>
        </div>
      )}
      {busy && <Loading>Deleting…</Loading>}
      {error && <ErrorNotice message={error} />}
      {open === 'invoke' && <Invoke api={api} service={s.name} />}
      {open === 'jobs' && <ServiceJobs api={api} service={s.name} />}
    </li>
  );
}

function BatchRow(props: { batch: Serverless.IBatch }): JSX.Element {
  const { batch } = props;
  const percent = batchPercent(batch);
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
    </li>
  );
}

/** Start a batch: every file under a bucket/folder through one service. */
function StartBatch(props: {
  api: ServerlessAPI;
  services: Serverless.IService[];
  onStarted: (batch: Serverless.IBatch) => void;
}): JSX.Element {
  const [service, setService] = React.useState(props.services[0]?.name ?? '');
  const [inputs, setInputs] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const chosen = service || props.services[0]?.name || '';
  const start = (event: React.FormEvent) => {
    event.preventDefault();
    if (!chosen || !inputs.trim()) {
      setError('Choose a service and give the bucket/folder of the files to process, e.g. ana/images.');
      return;
    }
    setBusy(true);
    setError(null);
    props.api.startBatch({ service: chosen, inputs: inputs.trim() }).then(
      batch => {
        setBusy(false);
        setInputs('');
        props.onStarted(batch);
      },
      e => {
        setBusy(false);
        setError(errorMessage(e));
      }
    );
  };
  return (
    <form className="jp-ReefLab-form" aria-label="Start a batch" onSubmit={start}>
      <label className="jp-ReefLab-field">
        <span>Service</span>
        <select className="jp-mod-styled" value={chosen} onChange={e => setService(e.currentTarget.value)}>
          {props.services.map(s => (
            <option key={s.name} value={s.name}>
              {s.name}
            </option>
          ))}
        </select>
      </label>
      <label className="jp-ReefLab-field">
        <span>Files in (bucket/folder)</span>
        <input className="jp-mod-styled" value={inputs} onChange={e => setInputs(e.currentTarget.value)} />
      </label>
      {error && <ErrorNotice message={error} />}
      <button type="submit" className="jp-ReefLab-button jp-mod-accept" disabled={busy || !props.services.length}>
        Start the batch
      </button>
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
  const [availability, setAvailability] = React.useState<Serverless.IAvailability | null>(null);
  const [checkError, setCheckError] = React.useState<string | null>(null);
  const [attempt, setAttempt] = React.useState(0);
  const [batching, setBatching] = React.useState(false);

  React.useEffect(() => {
    setCheckError(null);
    api.serverlessAvailability().then(setAvailability, e => setCheckError(errorMessage(e)));
  }, [api, attempt]);
  const on = visible && availability?.available === true;
  const fetchServices = React.useCallback((signal: AbortSignal) => api.services(signal), [api]);
  const services = usePolled(fetchServices, () => SLOW_MS * 2, on);
  const fetchBatches = React.useCallback((signal: AbortSignal) => api.batches(signal), [api]);
  const batches = usePolled(fetchBatches, batchInterval, on);
  React.useEffect(() => {
    if (props.refreshKey) {
      services.refresh();
      batches.refresh();
    }
  }, [props.refreshKey]);

  if (checkError) {
    return <ErrorNotice message={checkError} onRetry={() => setAttempt(a => a + 1)} />;
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
      {services.error && <ErrorNotice message={services.error} onRetry={services.refresh} />}
      {list === null && !services.error && <Loading>Loading your services…</Loading>}
      {list?.length === 0 && (
        <p className="jp-ReefLab-muted">
          No services yet. Open a module in the Marketplace and choose Make serverless.
        </p>
      )}
      {list && list.length > 0 && (
        <ul className="jp-ReefLab-deploymentList" aria-label="Your serverless services">
          {list.map(s => (
            <ServiceRow
              key={s.name}
              service={s}
              api={api}
              onDeleted={name => services.set(current => current?.filter(x => x.name !== name) ?? null)}
            />
          ))}
        </ul>
      )}
      <h4>Batches</h4>
      {batches.error && <ErrorNotice message={batches.error} onRetry={batches.refresh} />}
      {batches.value?.length === 0 && !batching && (
        <p className="jp-ReefLab-muted">No batches yet: run a service over every file of a folder.</p>
      )}
      {batches.value && batches.value.length > 0 && (
        <ul className="jp-ReefLab-deploymentList" aria-label="Your batches">
          {batches.value.map(b => (
            <BatchRow key={b.id} batch={b} />
          ))}
        </ul>
      )}
      {batching ? (
        <StartBatch
          api={api}
          services={list ?? []}
          onStarted={batch => {
            setBatching(false);
            batches.set(current => [batch, ...(current ?? []).filter(b => b.id !== batch.id)]);
            batches.refresh();
          }}
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
