/** React hooks of the Deployments section: the live list (polled while visible), a ticking clock, page visibility. */
import * as React from 'react';

import { Deployments, DeploymentsAPI, errorMessage } from './api';
import { pollInterval, upsert } from './deploymentsState';

/** Whether the browser tab is shown: no polling for a tab in the background. */
export function usePageVisible(): boolean {
  const [visible, setVisible] = React.useState(() => document.visibilityState !== 'hidden');
  React.useEffect(() => {
    const listener = () => setVisible(document.visibilityState !== 'hidden');
    document.addEventListener('visibilitychange', listener);
    return () => document.removeEventListener('visibilitychange', listener);
  }, []);
  return visible;
}

/** The time now, renewed every `interval` ms. */
export function useNow(interval: number): number {
  const [now, setNow] = React.useState(() => Date.now());
  React.useEffect(() => {
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), interval);
    return () => clearInterval(timer);
  }, [interval]);
  return now;
}

export interface IDeploymentsList {
  /** null until the first answer */
  list: Deployments.IDeployment[] | null;
  error: string | null;
  /** ask now (after an action, or an error) */
  refresh: () => void;
  /** show a deployment the panel just got (created, restarted) without waiting for the next poll */
  put: (deployment: Deployments.IDeployment) => void;
  /** forget a deleted deployment */
  drop: (id: string) => void;
}

/**
 * The user's deployments, asked for every 2 s while one is starting and every 15 s otherwise,
 * and not at all while `visible` is false (the panel or the tab is hidden). Each answer is asked
 * for only after the previous one came, so a slow server never piles up requests.
 */
export function useDeployments(api: Pick<DeploymentsAPI, 'deployments'>, visible: boolean): IDeploymentsList {
  const [list, setList] = React.useState<Deployments.IDeployment[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [generation, setGeneration] = React.useState(0);
  // bumped when an answer (or a failure) came: the next poll is planned from it
  const [answered, setAnswered] = React.useState(0);
  const listRef = React.useRef(list);
  listRef.current = list;

  React.useEffect(() => {
    if (!visible) {
      return;
    }
    const controller = new AbortController();
    api.deployments(controller.signal).then(
      answer => {
        if (!controller.signal.aborted) {
          setList(answer);
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
  }, [api, visible, generation]);

  React.useEffect(() => {
    const wait = pollInterval(listRef.current, visible, Date.now());
    if (wait === null || answered === 0) {
      return;
    }
    const timer = setTimeout(() => setGeneration(g => g + 1), wait);
    return () => clearTimeout(timer);
  }, [answered, visible]);

  const refresh = React.useCallback(() => setGeneration(g => g + 1), []);
  const put = React.useCallback((deployment: Deployments.IDeployment) => {
    setList(current => upsert(current, deployment));
    setGeneration(g => g + 1);
  }, []);
  const drop = React.useCallback((id: string) => setList(current => current?.filter(d => d.id !== id) ?? null), []);
  return { list, error, refresh, put, drop };
}
