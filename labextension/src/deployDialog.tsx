/** Deploy or try a module: hardware within a profile, a title, environment variables; the server's answer in words. */
import { addIcon, closeIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Catalog, Deployments, errorMessage, MarketplaceAPI } from './api';
import {
  checkForm,
  chooseProfile,
  clip,
  fieldLimit,
  HardwareField,
  IDeployForm,
  IEnvRow,
  initialForm,
  toRequest
} from './deployForm';
import { describeHardware } from './marketplaceState';
import { ErrorNotice } from './notice';
import { useFetched } from './usePolled';

export interface IDeployDialogProps {
  form: Catalog.IForm;
  kind: Deployments.Kind;
  api: Pick<MarketplaceAPI, 'createDeployment' | 'info'>;
  onCancel: () => void;
  onCreated: (deployment: Deployments.IDeployment) => void;
}

function profileLabel(profile: Catalog.IFormProfile): string {
  return profile.fits ? profile.display_name : `${profile.display_name} — ${profile.reason ?? 'below its recommendation'}`;
}

const FIELDS: Array<{ field: HardwareField; label: string; step: number }> = [
  { field: 'cpu', label: 'CPU', step: 0.5 },
  { field: 'memoryGB', label: 'Memory (GB)', step: 0.5 },
  { field: 'gpu', label: 'GPU', step: 1 }
];

function EnvRows(props: { rows: IEnvRow[]; onChange: (rows: IEnvRow[]) => void }): JSX.Element {
  const { rows, onChange } = props;
  const set = (i: number, row: Partial<IEnvRow>) => onChange(rows.map((r, j) => (j === i ? { ...r, ...row } : r)));
  return (
    <fieldset className="jp-ReefLab-env">
      <legend>Environment variables (optional)</legend>
      {rows.map((row, i) => (
        <div className="jp-ReefLab-envRow" key={i}>
          <input
            aria-label={`Name of variable ${i + 1}`}
            placeholder="NAME"
            value={row.name}
            spellCheck={false}
            onChange={e => set(i, { name: e.target.value })}
          />
          <input
            aria-label={`Value of variable ${i + 1}`}
            placeholder="value"
            value={row.value}
            spellCheck={false}
            autoComplete="off"
            onChange={e => set(i, { value: e.target.value })}
          />
          <button
            type="button"
            className="jp-ReefLab-iconButton"
            aria-label={`Remove variable ${i + 1}`}
            title="Remove"
            onClick={() => onChange(rows.filter((_, j) => j !== i))}
          >
            <closeIcon.react tag="span" />
          </button>
        </div>
      ))}
      <button
        type="button"
        className="jp-ReefLab-linkButton"
        onClick={() => onChange([...rows, { name: '', value: '' }])}
      >
        <addIcon.react tag="span" className="jp-ReefLab-inlineIcon" />
        Add a variable
      </button>
      {rows.length > 0 && (
        <p className="jp-ReefLab-muted">Values go to the module only; ReefLab shows their names, never the values.</p>
      )}
    </fieldset>
  );
}

export function DeployDialog(props: IDeployDialogProps): JSX.Element {
  const { form, kind } = props;
  const [state, setState] = React.useState<IDeployForm>(() => initialForm(form));
  const [clipped, setClipped] = React.useState<string | null>(null);
  const [sending, setSending] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const [tried, setTried] = React.useState(false);
  const headingId = React.useId();
  const first = React.useRef<HTMLSelectElement>(null);
  // opened from a button: the keyboard goes on to the form
  React.useEffect(() => first.current?.focus(), []);
  const profile = form.profiles.find(p => p.slug === state.profile) ?? null;
  const checked = checkForm(state, form);
  const blocking = Object.values(checked.errors).filter(Boolean);
  const verb = kind === 'try' ? 'Try' : 'Deploy';
  // how long a try runs before it stops by itself: the server's setting
  const { info } = props.api;
  const tryMinutes = useFetched(kind === 'try' && info ? () => info() : null, [info, kind]).value?.deployments
    .try_minutes;

  const update = (change: Partial<IDeployForm>) => {
    setState(s => ({ ...s, ...change }));
    setError(null);
  };

  const clipField = (field: HardwareField) => {
    if (!profile) {
      return;
    }
    const value = clip(state[field], field, profile);
    if (value !== state[field]) {
      update({ [field]: value });
      setClipped(`Lowered to the most ${profile.display_name} allows.`);
    }
  };

  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    setTried(true);
    if (blocking.length || sending) {
      return;
    }
    setSending(true);
    setError(null);
    props.api.createDeployment(toRequest(form.module, kind, state)).then(
      deployment => props.onCreated(deployment),
      e => {
        setSending(false);
        setError(errorMessage(e));
      }
    );
  };

  return (
    <form className="jp-ReefLab-dialog" aria-labelledby={headingId} onSubmit={submit} noValidate>
      <h4 id={headingId}>
        {verb} {form.title}
      </h4>
      {kind === 'try' ? (
        <p className="jp-ReefLab-info">
          A try stops by itself after {tryMinutes ?? 'a few'} minutes. Use it on a few of your own
          images.
        </p>
      ) : (
        <p className="jp-ReefLab-muted">It runs as a service you can call from code until you delete it.</p>
      )}
      {form.reason && (
        <div className="jp-ReefLab-warning" role="note">
          {form.reason}
        </div>
      )}

      <label className="jp-ReefLab-field">
        <span>Hardware</span>
        <select
          ref={first}
          value={state.profile ?? ''}
          onChange={e => {
            const next = form.profiles.find(p => p.slug === e.target.value);
            if (next) {
              setState(s => chooseProfile(s, next));
              setClipped(null);
              setError(null);
            }
          }}
        >
          {!profile && <option value="">No hardware you may use</option>}
          {form.profiles.map(p => (
            <option key={p.slug} value={p.slug}>
              {profileLabel(p)}
            </option>
          ))}
        </select>
      </label>
      {profile && (
        <p className="jp-ReefLab-muted">
          At most {describeHardware(profile.limits, profile.gpu_model)}; pre-filled with what the module recommends.
        </p>
      )}

      <div className="jp-ReefLab-hardwareInputs">
        {FIELDS.map(({ field, label, step }) => {
          const max = profile ? fieldLimit(profile, field) : 0;
          const fieldError = tried || state[field] !== '' ? checked.errors[field] : undefined;
          return (
            <label key={field} className="jp-ReefLab-field">
              <span>{label}</span>
              <input
                type="number"
                inputMode="decimal"
                min={field === 'gpu' ? 0 : step}
                max={max}
                step={step}
                value={state[field]}
                disabled={!profile || (field === 'gpu' && max === 0)}
                title={field === 'gpu' && max === 0 ? 'This hardware has no GPU' : undefined}
                aria-invalid={Boolean(fieldError)}
                onChange={e => update({ [field]: e.target.value })}
                onBlur={() => clipField(field)}
              />
              {fieldError && <span className="jp-ReefLab-fieldError">{fieldError}</span>}
            </label>
          );
        })}
      </div>
      {clipped && <p className="jp-ReefLab-muted" role="status">{clipped}</p>}

      <label className="jp-ReefLab-field">
        <span>Title (optional)</span>
        <input
          type="text"
          value={state.title}
          maxLength={120}
          placeholder={form.title}
          onChange={e => update({ title: e.target.value })}
        />
      </label>

      <EnvRows rows={state.env} onChange={env => update({ env })} />
      {checked.errors.env && <p className="jp-ReefLab-fieldError">{checked.errors.env}</p>}
      {checked.warnings.map(w => (
        <div key={w} className="jp-ReefLab-warning" role="note">
          {w}
        </div>
      ))}
      {tried && checked.errors.profile && <ErrorNotice message={checked.errors.profile} />}
      {error && <ErrorNotice message={error} />}

      <div className="jp-ReefLab-dialogButtons">
        <button type="button" className="jp-ReefLab-button" onClick={props.onCancel} disabled={sending}>
          Cancel
        </button>
        <button
          type="submit"
          className="jp-ReefLab-button jp-mod-accept"
          disabled={sending || !profile}
        >
          {sending ? 'Starting…' : verb}
        </button>
      </div>
    </form>
  );
}
