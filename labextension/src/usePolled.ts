/**
 * What the panel asks the server: once (useFetched), or again and again while someone looks at it (usePolled).
 */
import * as React from 'react';

import { errorMessage } from './api';

export interface IPolled<T> {
  /** null until the first answer */
  value: T | null;
  error: string | null;
  /** ask now (after an action, or an error) */
  refresh: () => void;
  /** show what the panel just learnt without waiting for the next answer */
  set: (update: (current: T | null) => T | null) => void;
}

/** An update of a polled list that drops the items `gone` says went away (deleted, forgotten). */
export function without<T>(gone: (item: T) => boolean): (list: T[] | null) => T[] | null {
  return list => list?.filter(item => !gone(item)) ?? null;
}

/**
 * Ask `fetch` now and then again after `interval(value)` ms (null: stop asking) while `visible`.
 * The next request goes out only after the previous answer came, so a slow server never piles them up;
 * leaving (or hiding the panel) aborts the request in flight. A new `refreshKey` (a section's refresh
 * button) asks at once.
 */
export function usePolled<T>(
  fetch: (signal: AbortSignal) => Promise<T>,
  interval: (value: T | null) => number | null,
  visible: boolean,
  refreshKey?: number
): IPolled<T> {
  const [value, setValue] = React.useState<T | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [generation, setGeneration] = React.useState(0);
  const [answered, setAnswered] = React.useState(0);
  const valueRef = React.useRef(value);
  valueRef.current = value;
  const intervalRef = React.useRef(interval);
  intervalRef.current = interval;

  React.useEffect(() => {
    if (!visible) {
      return;
    }
    const controller = new AbortController();
    fetch(controller.signal).then(
      answer => {
        if (!controller.signal.aborted) {
          setValue(answer);
          setError(null);
          setAnswered(n => n + 1);
        }
      },
      e => {
        if (!controller.signal.aborted) {
          setError(errorMessage(e));
          setAnswered(n => n + 1);
        }
      }
    );
    return () => controller.abort();
  }, [fetch, visible, generation]);

  React.useEffect(() => {
    const wait = visible && answered > 0 ? intervalRef.current(valueRef.current) : null;
    if (wait === null) {
      return;
    }
    const timer = setTimeout(() => setGeneration(g => g + 1), wait);
    return () => clearTimeout(timer);
  }, [answered, visible]);

  const refresh = React.useCallback(() => setGeneration(g => g + 1), []);
  React.useEffect(() => {
    if (refreshKey) {
      refresh();
    }
  }, [refreshKey]);
  const set = React.useCallback((update: (current: T | null) => T | null) => setValue(update), []);
  return { value, error, refresh, set };
}

export interface IFetched<T> {
  /** null until the answer came */
  value: T | null;
  error: string | null;
  /** it answered, it failed, or there was nothing to ask */
  done: boolean;
}

/**
 * What `fetch` answers, asked again (the old answer dropped, the request in flight aborted) whenever
 * `deps` change; a null `fetch` asks nothing.
 */
export function useFetched<T>(
  fetch: ((signal: AbortSignal) => Promise<T>) | null,
  deps: React.DependencyList
): IFetched<T> {
  const [state, setState] = React.useState<IFetched<T>>({ value: null, error: null, done: !fetch });
  React.useEffect(() => {
    if (!fetch) {
      setState({ value: null, error: null, done: true });
      return;
    }
    const controller = new AbortController();
    setState({ value: null, error: null, done: false });
    fetch(controller.signal).then(
      value => !controller.signal.aborted && setState({ value, error: null, done: true }),
      e => !controller.signal.aborted && setState({ value: null, error: errorMessage(e), done: true })
    );
    return () => controller.abort();
  }, deps);
  return state;
}
