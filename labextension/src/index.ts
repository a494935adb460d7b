import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';

import { MainAreaOpener } from './mainArea';
import { ReefLabPanel } from './panel';
import { requestPipelineRun } from './pipelinesState';

const reefIconSvg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M3 19c2-1 3.5-1 5 0s3 1 5 0 3.5-1 5 0 2.5 1 3 .5V21H3zM7 17V9a1 1 0 1 1 2 0v3l2-2V5a1 1 0 1 1 2 0v7l2-2V8a1 1 0 1 1 2 0v3l-4 4v2zM4 17v-4a1 1 0 1 1 2 0v4z"/></svg>`;

export const reefIcon = new LabIcon({ name: 'reeflab:reef', svgstr: reefIconSvg });

const COMMAND_OPEN = 'reeflab:open';
const COMMAND_RUN_PIPELINE = 'reeflab:run-pipeline';

/** One command per section: opens the panel there (palette: "ReefLab: Storage"...). */
const SECTION_COMMANDS: Array<{ id: string; section: string; label: string; caption: string }> = [
  { id: 'reeflab:marketplace', section: 'Marketplace', label: 'Marketplace', caption: 'Find AI modules' },
  { id: 'reeflab:deployments', section: 'Deployments', label: 'Deployments', caption: 'Your running modules' },
  { id: 'reeflab:storage', section: 'Storage', label: 'Storage', caption: 'S3 and WebDAV connections' },
  { id: 'reeflab:serverless', section: 'Serverless', label: 'Serverless', caption: 'Services and batches' },
  { id: 'reeflab:jobs', section: 'Jobs', label: 'Jobs', caption: 'Pipeline runs, notebook jobs and training runs' }
];

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'reeflab:plugin',
  description: 'ReefLab side panel: AI modules, deployments, serverless, storage and jobs.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette, ILayoutRestorer, IRenderMimeRegistry, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    rendermime: IRenderMimeRegistry | null,
    launcher: ILauncher | null
  ) => {
    // module descriptions are markdown: rendered (sanitised) by JupyterLab's renderer when it is there
    // module pages, Try and logs open in main-area tabs: the panel stays the navigator
    const panel = new ReefLabPanel(rendermime, new MainAreaOpener(shell, reefIcon, rendermime));
    panel.title.icon = reefIcon;
    panel.title.caption = 'ReefLab';
    shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, 'reeflab-panel');

    app.commands.addCommand(COMMAND_OPEN, {
      // the launcher shows the icon and a short label; the palette the full one
      label: args => (args.isLauncher ? 'ReefLab' : 'ReefLab: Open panel'),
      caption: 'AI modules, deployments, storage, serverless and jobs',
      icon: args => (args.isPalette ? undefined : reefIcon),
      execute: () => shell.activateById(panel.id)
    });
    palette?.addItem({ command: COMMAND_OPEN, category: 'ReefLab' });
    launcher?.add({ command: COMMAND_OPEN, category: 'Other', rank: 0 });

    for (const entry of SECTION_COMMANDS) {
      app.commands.addCommand(entry.id, {
        label: `ReefLab: ${entry.label}`,
        caption: entry.caption,
        execute: () => {
          shell.activateById(panel.id);
          // the section unfolds once the panel is shown
          requestAnimationFrame(() => panel.showSection(entry.section));
        }
      });
      palette?.addItem({ command: entry.id, category: 'ReefLab' });
    }

    /** The .pipeline file open in the main area (the Elyra editor), if any. */
    const openPipeline = (): string | null => {
      const context = (app.shell.currentWidget as { context?: { path?: string } } | null)?.context;
      return context?.path?.endsWith('.pipeline') ? context.path : null;
    };
    app.commands.addCommand(COMMAND_RUN_PIPELINE, {
      label: 'ReefLab: Run this pipeline…',
      caption: 'Run the open pipeline in the background; watch its steps in the Jobs section',
      isEnabled: () => openPipeline() !== null,
      isVisible: () => openPipeline() !== null,
      execute: args => {
        const path = (args.path as string | undefined) ?? openPipeline();
        if (!path) {
          return;
        }
        shell.activateById(panel.id);
        requestAnimationFrame(() => {
          panel.showSection('Jobs');
          requestPipelineRun(path);
        });
      }
    });
    palette?.addItem({ command: COMMAND_RUN_PIPELINE, category: 'ReefLab' });
    // right-click on the pipeline editor's tab
    app.contextMenu.addItem({ command: COMMAND_RUN_PIPELINE, selector: '.lm-DockPanel-tabBar .lm-TabBar-tab', rank: 50 });
  }
};

export default plugin;
