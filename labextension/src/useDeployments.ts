/** React hooks of the Deployments section: the live list (polled while visible), a ticking clock, page visibility. */
import * as React from 'react';

import { Deployments, DeploymentsAPI } from './api';
import { pollInterval, upsert } from './deploymentsState';
import { usePolled, without } from './usePolled';

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
 * and not at all while `visible` is false (the panel or the tab is hidden); polled as every list is.
 */
export function useDeployments(api: Pick<DeploymentsAPI, 'deployments'>, visible: boolean): IDeploymentsList {
  const fetch = React.useCallback((signal: AbortSignal) => api.deployments(signal), [api]);
  const polled = usePolled(fetch, list => pollInterval(list, visible, Date.now()), visible);
  const { set, refresh } = polled;
  const put = React.useCallback(
    (deployment: Deployments.IDeployment) => {
      set(current => upsert(current, deployment));
      refresh();
    },
    [set, refresh]
  );
  const drop = React.useCallback((id: string) => set(without(d => d.id === id)), [set]);
  return { list: polled.value, error: polled.error, refresh, put, drop };
}
