/** How every list of the panel shows: its error with Try again, a loading line, words when empty, else its rows. */
import * as React from 'react';

import { ErrorNotice, Loading } from './notice';
import type { IPolled } from './usePolled';

export function PolledList<T>(props: {
  /** the list (null until the first answer), its error, and how to ask again */
  polled: Pick<IPolled<T[]>, 'value' | 'error' | 'refresh'>;
  /** the order shown */
  sort?: (items: T[]) => T[];
  /** the list's name for screen readers, e.g. "Your jobs" */
  label: string;
  /** what is loading, until the first answer (none: nothing shown) */
  loading?: string;
  /** what an empty list says (none: nothing) */
  empty?: React.ReactNode;
  children: (item: T) => JSX.Element;
}): JSX.Element {
  const { value, error, refresh } = props.polled;
  const items = value && props.sort ? props.sort(value) : value;
  return (
    <>
      {error && <ErrorNotice message={error} onRetry={refresh} />}
      {items === null && !error && props.loading && <Loading>{props.loading}</Loading>}
      {items?.length === 0 && props.empty && <p className="jp-ReefLab-muted">{props.empty}</p>}
      {items && items.length > 0 && (
        <ul className="jp-ReefLab-deploymentList" aria-label={props.label}>
          {items.map(props.children)}
        </ul>
      )}
    </>
  );
}
