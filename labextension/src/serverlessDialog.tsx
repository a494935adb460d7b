/** "Make serverless" on a module: a form for the service (name, CPU, memory, input and output folders). */
import * as React from 'react';

import { Catalog, errorMessage, MarketplaceAPI, Serverless, Storage } from './api';
import { ErrorNotice, Loading } from './notice';
import {
  checkServiceForm,
  editService,
  initialServiceForm,
  IServiceForm,
  ServiceField,
  toServiceRequest
} from './serverlessForm';

const SERVERLESS_WHAT = 'run it on demand, one job per file uploaded to its input folder';

type MakeAPI = Pick<MarketplaceAPI, 'makeServerless' | 'serverlessAvailability' | 'platformStorage'>;

/** The user's platform storage: undefined while asking, null when this server has none. */
function usePlatformStorage(api: MakeAPI): Storage.IConnection | null | undefined {
  const [storage, setStorage] = React.useState<Storage.IConnection | null | undefined>(undefined);
  React.useEffect(() => {
    if (!api.platformStorage) {
      setStorage(null);
      return;
    }
    const controller = new AbortController();
    api.platformStorage(controller.signal).then(
      found => !controller.signal.aborted && setStorage(found),
      () => !controller.signal.aborted && setStorage(null)
    );
    return () => controller.abort();
  }, [api]);
  return storage;
}

function Field(props: {
  field: ServiceField;
  label: string;
  state: IServiceForm;
  error?: string;
  prefix?: string;
  hint?: string;
  type?: 'text' | 'number';
  step?: number;
  onChange: (field: ServiceField, value: string) => void;
}): JSX.Element {
  const { field, state } = props;
  const described = React.useId();
  const words = props.error ?? props.hint;
  return (
    <label className="jp-ReefLab-field">
      <span>{props.label}</span>
      <span className={props.prefix ? 'jp-ReefLab-prefixed' : undefined}>
        {props.prefix && <span className="jp-ReefLab-prefix">{props.prefix}/</span>}
        <input
          type={props.type ?? 'text'}
          inputMode={props.type === 'number' ? 'decimal' : undefined}
          min={props.type === 'number' ? props.step : undefined}
          step={props.step}
          value={state[field]}
          spellCheck={false}
          aria-label={props.label}
          aria-describedby={words ? described : undefined}
          aria-invalid={Boolean(props.error)}
          onChange={e => props.onChange(field, e.target.value)}
        />
      </span>
      {words && (
        <span id={described} className={props.error ? 'jp-ReefLab-fieldError' : 'jp-ReefLab-muted'}>
          {words}
        </span>
      )}
    </label>
  );
}

export interface IServerlessDialogProps {
  module: Pick<Catalog.IModule, 'id' | 'title'>;
  /** what the module needs for inference, to pre-fill CPU and memory */
  needs?: Partial<Catalog.INeeds> | null;
  api: MakeAPI;
  onCancel: () => void;
  onMade: (service: Serverless.IService, request: Serverless.IMakeRequest) => void;
}

export function ServerlessDialog(props: IServerlessDialogProps): JSX.Element {
  const { module, needs } = props;
  const storage = usePlatformStorage(props.api);
  const bucket = storage?.bucket ?? null;
  const [state, setState] = React.useState<IServiceForm>(() => initialServiceForm(module.id, needs));
  const [tried, setTried] = React.useState(false);
  const [sending, setSending] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const headingId = React.useId();
  const first = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => first.current?.querySelector('input')?.focus(), []);
  const checked = checkServiceForm(state, needs, bucket);
  const blocking = Object.values(checked.errors).filter(Boolean);
  // folders are checked as they are typed; the rest once the form is sent
  const shown = (field: ServiceField) =>
    tried || field === 'input' || field === 'output' ? checked.errors[field] : undefined;
  const change = (field: ServiceField, value: string) => {
    setState(s => editService(s, field, value));
    setError(null);
  };

  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    setTried(true);
    if (blocking.length || sending || storage === undefined || !props.api.makeServerless) {
      return;
    }
    setSending(true);
    setError(null);
    const request = toServiceRequest(module.id, state, bucket);
    props.api.makeServerless(request).then(
      service => props.onMade(service, request),
      e => {
        setSending(false);
        setError(errorMessage(e));
      }
    );
  };

  return (
    <form className="jp-ReefLab-dialog" aria-labelledby={headingId} onSubmit={submit} noValidate>
      <h4 id={headingId}>Make {module.title} serverless</h4>
      <p className="jp-ReefLab-muted">
        It runs only when called: once per file uploaded to its input folder, from the Invoke button, from code or in
        batches. Its results go to its output folder.
      </p>
      <div ref={first}>
        <Field field="name" label="Service name" state={state} error={shown('name')} onChange={change} />
      </div>
      <div className="jp-ReefLab-hardwareInputs">
        <Field field="cpu" label="CPU" type="number" step={0.5} state={state} error={shown('cpu')} onChange={change} />
        <Field
          field="memoryGB"
          label="Memory (GB)"
          type="number"
          step={0.5}
          state={state}
          error={shown('memoryGB')}
          onChange={change}
        />
      </div>
      {storage === undefined && <Loading>Looking for your storage…</Loading>}
      {storage === null && (
        <div className="jp-ReefLab-warning" role="note">
          This server has no platform storage, so the service gets no folders: call it with Invoke or from code.
        </div>
      )}
      {bucket && (
        <fieldset className="jp-ReefLab-folders">
          <legend>Folders in your bucket {bucket} (made for you)</legend>
          <Field
            field="input"
            label="Input folder"
            prefix={bucket}
            hint="Each file uploaded here starts a job. Leave it empty for none."
            state={state}
            error={shown('input')}
            onChange={change}
          />
          <Field
            field="output"
            label="Output folder"
            prefix={bucket}
            hint="Each job's result is written here."
            state={state}
            error={shown('output')}
            onChange={change}
          />
        </fieldset>
      )}
      {checked.warnings.map(w => (
        <div key={w} className="jp-ReefLab-warning" role="note">
          {w}
        </div>
      ))}
      {error && <ErrorNotice message={error} />}
      <div className="jp-ReefLab-dialogButtons">
        <button type="button" className="jp-ReefLab-button" onClick={props.onCancel} disabled={sending}>
          Cancel
        </button>
        <button type="submit" className="jp-ReefLab-button jp-mod-accept" disabled={sending || storage === undefined}>
          {sending ? 'Making it…' : 'Make serverless'}
        </button>
      </div>
    </form>
  );
}

/**
 * Whether this server has a serverless engine: null while asking, and "coming soon" (undefined)
 * for an API that cannot make services at all.
 */
function useServerless(api: MakeAPI): Serverless.IAvailability | null | undefined {
  const [availability, setAvailability] = React.useState<Serverless.IAvailability | null | undefined>(
    api.serverlessAvailability && api.makeServerless ? null : undefined
  );
  React.useEffect(() => {
    if (!api.serverlessAvailability || !api.makeServerless) {
      return;
    }
    let live = true;
    api.serverlessAvailability().then(
      answer => live && setAvailability(answer),
      e => live && setAvailability({ available: false, reason: errorMessage(e) })
    );
    return () => {
      live = false;
    };
  }, [api]);
  return availability;
}

/** What a made service does, in words: where to upload and where results go. */
export function madeWords(name: string, request: Serverless.IMakeRequest): string {
  const input = request.inputs?.[0];
  const output = request.outputs?.[0];
  const uploads = input ? `upload files to ${input} to start a job each` : 'invoke it';
  return `Service ${name} is ready: ${uploads} under Serverless${output ? `; results go to ${output}` : ''}.`;
}

/** The "Make serverless" button of a module; its form opens in its place. */
export function MakeServerless(props: {
  module: Catalog.IModule;
  needs?: Partial<Catalog.INeeds> | null;
  api: MakeAPI;
}): JSX.Element {
  const availability = useServerless(props.api);
  const [open, setOpen] = React.useState(false);
  const [made, setMade] = React.useState<string | null>(null);
  if (availability === undefined) {
    return (
      <>
        <span title={`Coming soon: ${SERVERLESS_WHAT}`}>
          <button type="button" className="jp-ReefLab-button" disabled title={`Coming soon: ${SERVERLESS_WHAT}`}>
            Make serverless
          </button>
        </span>
        <span className="jp-ReefLab-muted jp-ReefLab-soon">serverless: coming soon</span>
      </>
    );
  }
  const why =
    availability === null
      ? 'Looking for the serverless engine…'
      : !availability.available
        ? `Serverless is not set up on this server: ${availability.reason ?? ''}`
        : !props.module.deployable
          ? 'This module cannot run here.'
          : null;
  if (open) {
    return (
      <ServerlessDialog
        module={props.module}
        needs={props.needs}
        api={props.api}
        onCancel={() => setOpen(false)}
        onMade={(service, request) => {
          setOpen(false);
          setMade(madeWords(service.name, request));
        }}
      />
    );
  }
  return (
    <>
      <span title={why ?? `Make serverless: ${SERVERLESS_WHAT}`}>
        <button
          type="button"
          className="jp-ReefLab-button"
          disabled={why !== null}
          title={why ?? `Make serverless: ${SERVERLESS_WHAT}`}
          onClick={() => {
            setMade(null);
            setOpen(true);
          }}
        >
          Make serverless…
        </button>
      </span>
      {made && (
        <div className="jp-ReefLab-info" role="status">
          {made}
        </div>
      )}
    </>
  );
}
