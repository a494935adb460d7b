/** What every row of the panel does the same way: one action at a time, Cancel or Remove, a delete to confirm. */
import * as React from 'react';

import { errorMessage } from './api';
import { ErrorNotice, Loading } from './notice';

export interface IAction {
  /** the words of the action running, null when none is */
  busy: string | null;
  error: string | null;
  /** run `call`, showing `what` while it runs and its error after */
  run: (what: string, call: () => Promise<unknown>) => void;
  clear: () => void;
}

/** Run one action of a row at a time, with its words while it runs and its error after. */
export function useAction(): IAction {
  const [busy, setBusy] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const run = React.useCallback((what: string, call: () => Promise<unknown>) => {
    setBusy(what);
    setError(null);
    call().then(
      () => setBusy(null),
      e => {
        setBusy(null);
        setError(errorMessage(e));
      }
    );
  }, []);
  const clear = React.useCallback(() => setError(null), []);
  return { busy, error, run, clear };
}

/** The running action's words, or its error. */
export function ActionStatus(props: { action: IAction }): JSX.Element {
  const { busy, error } = props.action;
  return (
    <>
      {busy && <Loading>{busy}</Loading>}
      {error && <ErrorNotice message={error} />}
    </>
  );
}

/** Cancel while it runs, Remove (forget it) once it ended. */
export function CancelOrRemove(props: {
  active: boolean;
  action: IAction;
  /** what Remove forgets, and what stays */
  removeTitle: string;
  cancel: () => Promise<unknown>;
  remove: () => Promise<unknown>;
}): JSX.Element {
  const { action } = props;
  return props.active ? (
    <button
      type="button"
      className="jp-ReefLab-button jp-mod-warn"
      disabled={action.busy !== null}
      onClick={() => action.run('Cancelling…', props.cancel)}
    >
      Cancel
    </button>
  ) : (
    <button
      type="button"
      className="jp-ReefLab-button"
      disabled={action.busy !== null}
      title={props.removeTitle}
      onClick={() => action.run('Removing…', props.remove)}
    >
      Remove
    </button>
  );
}

/** "Delete X?" with the consequences in words, under a row's Delete button. */
export function ConfirmDelete(props: {
  name: string;
  busy: boolean;
  onDelete: () => void;
  onKeep: () => void;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div className="jp-ReefLab-confirm" role="alertdialog" aria-label={`Delete ${props.name}?`}>
      <span>{props.children}</span>
      <button type="button" className="jp-ReefLab-button jp-mod-warn" disabled={props.busy} onClick={props.onDelete}>
        Delete it
      </button>
      <button type="button" className="jp-ReefLab-button" disabled={props.busy} onClick={props.onKeep}>
        Keep it
      </button>
    </div>
  );
}

/** The end of a form: what is wrong in it, the action's progress or error, then its submit button and Cancel. */
export function FormEnd(props: {
  /** shown once the user tried to send it */
  problem?: string | null | false;
  action: IAction;
  submit: string;
  onCancel: () => void;
}): JSX.Element {
  return (
    <>
      {props.problem && <ErrorNotice message={props.problem} />}
      <ActionStatus action={props.action} />
      <div className="jp-ReefLab-rowActions">
        <button type="submit" className="jp-ReefLab-button jp-mod-accept" disabled={props.action.busy !== null}>
          {props.submit}
        </button>
        <button type="button" className="jp-ReefLab-button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </>
  );
}
