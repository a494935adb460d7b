/**
 * The ReefLab side panel: the marketplace, your deployments, storage, serverless services, notebook
 * jobs, and your account and hardware.
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { launchIcon, ReactWidget, refreshIcon } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import * as React from 'react';

import { annotationApi, api, Deployments, jobsApi, ReefLab, serverlessApi, serverURL, storageApi } from './api';
import { AnnotationView } from './annotation';
import { DeploymentsView } from './deployments';
import { summarize } from './deploymentsState';
import { JobsView } from './jobs';
import type { IOpener } from './mainArea';
import { Marketplace } from './marketplace';
import { platformApi } from './api/platform';
import { ErrorNotice, Loading } from './notice';
import { PlatformSection } from './platform';
import { Section } from './section';
import { ServerlessView } from './serverless';
import { StorageView } from './storage';
import { useDeployments, usePageVisible } from './useDeployments';
import { useFetched } from './usePolled';

/** The refresh button at the right of a section's heading. */
function RefreshButton(props: { what: string; onClick: () => void }): JSX.Element {
  return (
    <button
      type="button"
      className="jp-ReefLab-iconButton"
      aria-label={`Refresh ${props.what}`}
      title={`Refresh ${props.what}`}
      onClick={props.onClick}
    >
      <refreshIcon.react tag="span" />
    </button>
  );
}

function formatProfile(profile: ReefLab.IProfile): string {
  const gb = (profile.memory_bytes / 1e9).toFixed(0);
  const gpu = profile.gpu ? ` · ${profile.gpu.count}× ${profile.gpu.model ?? profile.gpu.resource}` : '';
  return `${profile.cpu} CPU · ${gb} GB${gpu}`;
}

/** Who is signed in, their groups, and the hardware profiles they may use. */
function AccountSection(): JSX.Element {
  const [attempt, setAttempt] = React.useState(0);
  const account = useFetched(() => Promise.all([api.info(), api.profiles()]), [attempt]);
  const [info, profiles] = account.value ?? [null, null];
  const error = account.error;

  return (
    <Section
      title="Account and hardware"
      hint={info ? info.user : undefined}
      defaultOpen={false}
      className="jp-ReefLab-account"
    >
      {error && <ErrorNotice message={error} onRetry={() => setAttempt(a => a + 1)} />}
      {!info && !error && <Loading>Loading…</Loading>}
      {info && (
        <div aria-label="Account">
          <p>
            Signed in as <strong>{info.user}</strong>
            <span className="jp-ReefLab-muted"> · ReefLab v{info.version}</span>
          </p>
          <p>{info.groups.length ? `Groups: ${info.groups.join(', ')}` : 'No groups'}</p>
        </div>
      )}
      {profiles && (
        <div aria-label="Hardware">
          <h4>Hardware you may use</h4>
          <ul className="jp-ReefLab-profiles">
            {profiles.profiles.map(p => (
              <li key={p.slug} title={p.description}>
                <strong>{p.display_name}</strong>
                {p.slug === profiles.default && <span className="jp-ReefLab-badge">default</span>}
                <div className="jp-ReefLab-muted">{formatProfile(p)}</div>
              </li>
            ))}
          </ul>
        </div>
      )}
    </Section>
  );
}

/** MLflow, logged in as you, in a new tab: shown when this server has a tracking server. */
export function MlflowLink(props: { info: () => Promise<ReefLab.ITrainingInfo> }): JSX.Element | null {
  const [ui, setUi] = React.useState<string | null>(null);
  React.useEffect(() => {
    props.info().then(
      info => setUi(info.tracking_uri ? info.ui : null),
      () => setUi(null) // no tracking here: no link
    );
  }, []);
  if (!ui) {
    return null;
  }
  return (
    <a
      className="jp-ReefLab-button jp-ReefLab-headerLinks"
      href={serverURL(ui)}
      target="_blank"
      rel="noopener noreferrer"
      title="Your training runs and models in MLflow (opens a new tab, logged in as you)"
    >
      MLflow
      <launchIcon.react tag="span" className="jp-ReefLab-linkIcon" />
    </a>
  );
}

export interface IPanelViewProps {
  rendermime?: IRenderMimeRegistry | null;
  /** whether the panel is shown in the sidebar: nothing is polled while it is not */
  visible?: boolean;
  /** opens module pages, Try and logs in main-area tabs */
  opener?: IOpener | null;
}

export function ReefLabPanelView(props: IPanelViewProps): JSX.Element {
  const pageVisible = usePageVisible();
  const polling = (props.visible ?? true) && pageVisible;
  const deployments = useDeployments(api, polling);
  const [refresh, setRefresh] = React.useState({ storage: 0, serverless: 0, jobs: 0, annotation: 0 });
  const bump = (what: keyof typeof refresh) => setRefresh(r => ({ ...r, [what]: r[what] + 1 }));
  const [focusId, setFocusId] = React.useState<string | null>(null);
  // projects are listed only while the section is open: listing them wakes the user's Label Studio
  const [annotationOpen, setAnnotationOpen] = React.useState(false);
  const deployed = React.useCallback(
    (deployment: Deployments.IDeployment) => {
      deployments.put(deployment);
      setFocusId(deployment.id);
    },
    [deployments.put]
  );
  const opener = props.opener ?? undefined;
  React.useEffect(() => opener?.onDeployed(deployed), [opener, deployed]);
  // a check ended on a module's page: the cards show the new badges
  const [checks, setChecks] = React.useState(0);
  React.useEffect(() => opener?.onChecked(() => setChecks(n => n + 1)), [opener]);
  return (
    <div className="jp-ReefLab-panel">
      <header className="jp-ReefLab-header">
        <h2>ReefLab</h2>
        <MlflowLink info={api.trainingInfo} />
      </header>
      <Section title="Marketplace" className="jp-ReefLab-marketplaceSection">
        <Marketplace
          rendermime={props.rendermime}
          onDeployed={deployed}
          onOpen={opener && (id => opener.module(id))}
          reloadKey={checks}
        />
      </Section>
      <Section
        title="Deployments"
        hint={summarize(deployments.list)}
        className="jp-ReefLab-deploymentsSection"
        actions={<RefreshButton what="the deployments" onClick={deployments.refresh} />}
      >
        <DeploymentsView api={api} deployments={deployments} focusId={focusId} opener={opener} />
      </Section>
      <Section
        title="Storage"
        defaultOpen={false}
        className="jp-ReefLab-storageSection"
        actions={<RefreshButton what="your storage" onClick={() => bump('storage')} />}
      >
        <StorageView api={storageApi} visible={polling} refreshKey={refresh.storage} />
      </Section>
      <Section
        title="Serverless"
        defaultOpen={false}
        className="jp-ReefLab-serverlessSection"
        actions={<RefreshButton what="your services" onClick={() => bump('serverless')} />}
      >
        <ServerlessView api={serverlessApi} visible={polling} refreshKey={refresh.serverless} />
      </Section>
      <Section
        title="Jobs"
        defaultOpen={false}
        className="jp-ReefLab-jobsSection"
        actions={<RefreshButton what="your jobs" onClick={() => bump('jobs')} />}
      >
        <JobsView api={jobsApi} visible={polling} refreshKey={refresh.jobs} />
      </Section>
      <Section
        title="Annotation"
        defaultOpen={false}
        className="jp-ReefLab-annotationSection"
        onToggle={setAnnotationOpen}
        actions={<RefreshButton what="your annotation projects" onClick={() => bump('annotation')} />}
      >
        <AnnotationView api={annotationApi} visible={polling && annotationOpen} refreshKey={refresh.annotation} />
      </Section>
      <PlatformSection api={platformApi} visible={polling} />
      <AccountSection />
    </div>
  );
}

export class ReefLabPanel extends ReactWidget {
  constructor(
    private readonly rendermime: IRenderMimeRegistry | null = null,
    private readonly opener: IOpener | null = null
  ) {
    super();
    this.id = 'reeflab-panel';
    this.addClass('jp-ReefLab');
  }

  /** Unfold a section (by its title) and bring it into view: the commands' way to a section. */
  showSection(title: string): void {
    const section = this.node.querySelector(`section.jp-ReefLab-section[aria-label="${title}"]`);
    const toggle = section?.querySelector<HTMLButtonElement>('.jp-ReefLab-sectionToggle');
    if (toggle?.getAttribute('aria-expanded') === 'false') {
      toggle.click();
    }
    section?.scrollIntoView({ block: 'start' });
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.update();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.update();
  }

  render(): JSX.Element {
    return <ReefLabPanelView rendermime={this.rendermime} visible={this.isVisible} opener={this.opener} />;
  }
}
