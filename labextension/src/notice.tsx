/** Messages in the panel: errors (with a way to try again) and loading lines screen readers announce. */
import * as React from 'react';

export function ErrorNotice(props: { message: string; onRetry?: () => void }): JSX.Element {
  return (
    <div className="jp-ReefLab-error" role="alert">
      <span>{props.message}</span>
      {props.onRetry && (
        <button type="button" className="jp-ReefLab-linkButton" onClick={props.onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading(props: { children: React.ReactNode }): JSX.Element {
  return (
    <div className="jp-ReefLab-loading" role="status">
      <span className="jp-ReefLab-spinner" aria-hidden="true" />
      {props.children}
    </div>
  );
}
