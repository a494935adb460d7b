/** The ReefLab side panel. Sections are added as their APIs land. */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { api, ReefLab } from './api';

function formatProfile(profile: ReefLab.IProfile): string {
  const gb = (profile.memory_bytes / 1e9).toFixed(0);
  const gpu = profile.gpu ? ` · ${profile.gpu.count}× ${profile.gpu.model ?? profile.gpu.resource}` : '';
  return `${profile.cpu} CPU · ${gb} GB${gpu}`;
}

export function ReefLabPanelView(): JSX.Element {
  const [info, setInfo] = React.useState<ReefLab.IInfo | null>(null);
  const [profiles, setProfiles] = React.useState<ReefLab.IProfiles | null>(null);
  const [error, setError] = React.useState<string | null>(null);

  React.useEffect(() => {
    Promise.all([api.info(), api.profiles()])
      .then(([i, p]) => {
        setInfo(i);
        setProfiles(p);
      })
      .catch((e: Error) => setError(e.message));
  }, []);

  return (
    <div className="jp-ReefLab-panel">
      <header className="jp-ReefLab-header">
        <h2>ReefLab</h2>
        {info && <span className="jp-ReefLab-version">v{info.version}</span>}
      </header>
      {error && (
        <div className="jp-ReefLab-error" role="alert">
          {error}
        </div>
      )}
      {!info && !error && <div className="jp-ReefLab-loading">Loading…</div>}
      {info && (
        <section className="jp-ReefLab-section" aria-label="Account">
          <h3>Signed in as {info.user}</h3>
          <p>{info.groups.length ? `Groups: ${info.groups.join(', ')}` : 'No groups'}</p>
        </section>
      )}
      {profiles && (
        <section className="jp-ReefLab-section" aria-label="Hardware">
          <h3>Hardware you may use</h3>
          <ul className="jp-ReefLab-profiles">
            {profiles.profiles.map(p => (
              <li key={p.slug} title={p.description}>
                <strong>{p.display_name}</strong>
                {p.slug === profiles.default && <span className="jp-ReefLab-badge">default</span>}
                <div className="jp-ReefLab-muted">{formatProfile(p)}</div>
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}

export class ReefLabPanel extends ReactWidget {
  constructor() {
    super();
    this.id = 'reeflab-panel';
    this.addClass('jp-ReefLab');
  }

  render(): JSX.Element {
    return <ReefLabPanelView />;
  }
}
