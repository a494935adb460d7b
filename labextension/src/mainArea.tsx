/**
 * What needs room opens in JupyterLab's main area, one tab per thing (a module's page, a Try, a log);
 * the side panel stays the navigator. Opening what is already open brings its tab forward.
 */
import { ILabShell } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon, ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { api, Checks, Deployments } from './api';
import { LogsViewer } from './logsViewer';
import { ModuleDetail } from './moduleDetail';
import { TryView } from './tryView';

/** Where the panel opens things: in tests and narrow hosts it is absent, and they open in place. */
export interface IOpener {
  module(id: string): void;
  tryDeployment(deployment: Deployments.IDeployment): void;
  logs(deployment: Deployments.IDeployment): void;
  /** a deployment was deleted: its Try and log tabs close */
  forget(deploymentId: string): void;
  /** a deployment was started from a tab: the panel shows it (returns the unsubscribe) */
  onDeployed(listener: (deployment: Deployments.IDeployment) => void): () => void;
  /** a check ended on a module's page: the marketplace shows its new badge (returns the unsubscribe) */
  onChecked(listener: (run: Checks.IRun) => void): () => void;
}

export class MainAreaOpener implements IOpener {
  private readonly listeners = new Set<(deployment: Deployments.IDeployment) => void>();
  private readonly checkListeners = new Set<(run: Checks.IRun) => void>();

  constructor(
    private readonly shell: ILabShell,
    private readonly icon: LabIcon,
    private readonly rendermime: IRenderMimeRegistry | null
  ) {}

  module(id: string): void {
    this.open(`reeflab-module-${id}`, id, 'Module', () => (
      <ModuleDetail
        id={id}
        api={api}
        rendermime={this.rendermime}
        onDeployed={deployment => this.listeners.forEach(listener => listener(deployment))}
        onChecked={run => this.checkListeners.forEach(listener => listener(run))}
        onTitle={title => this.retitle(`reeflab-module-${id}`, title)}
      />
    ));
  }

  tryDeployment(deployment: Deployments.IDeployment): void {
    this.open(`reeflab-try-${deployment.id}`, `Try ${deployment.title}`, 'Try', () => (
      <TryView deployment={deployment} api={api} />
    ));
  }

  logs(deployment: Deployments.IDeployment): void {
    this.open(`reeflab-logs-${deployment.id}`, `Log: ${deployment.title}`, 'Log', () => (
      <LogsViewer deployment={deployment} api={api} />
    ));
  }

  forget(deploymentId: string): void {
    for (const id of [`reeflab-try-${deploymentId}`, `reeflab-logs-${deploymentId}`]) {
      this.find(id)?.dispose();
    }
  }

  onDeployed(listener: (deployment: Deployments.IDeployment) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onChecked(listener: (run: Checks.IRun) => void): () => void {
    this.checkListeners.add(listener);
    return () => this.checkListeners.delete(listener);
  }

  private find(id: string): MainAreaWidget | undefined {
    for (const widget of this.shell.widgets('main')) {
      if (widget.id === id) {
        return widget as MainAreaWidget;
      }
    }
    return undefined;
  }

  private retitle(id: string, title: string): void {
    const widget = this.find(id);
    if (widget) {
      widget.title.label = title;
    }
  }

  private open(id: string, label: string, kind: string, render: () => JSX.Element): void {
    const existing = this.find(id);
    if (existing) {
      this.shell.activateById(id);
      return;
    }
    const content = ReactWidget.create(<div className="jp-ReefLab jp-ReefLab-tabBody">{render()}</div>);
    content.addClass('jp-ReefLab-tabContent');
    const widget = new MainAreaWidget({ content });
    widget.id = id;
    widget.addClass(`jp-ReefLab-tab`);
    widget.title.label = label;
    widget.title.caption = `ReefLab ${kind.toLowerCase()}: ${label}`;
    widget.title.icon = this.icon;
    widget.title.closable = true;
    this.shell.add(widget, 'main', { mode: 'tab-after' });
    this.shell.activateById(id);
  }
}
