import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';

import { ReefLabPanel } from './panel';

const reefIconSvg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M3 19c2-1 3.5-1 5 0s3 1 5 0 3.5-1 5 0 2.5 1 3 .5V21H3zM7 17V9a1 1 0 1 1 2 0v3l2-2V5a1 1 0 1 1 2 0v7l2-2V8a1 1 0 1 1 2 0v3l-4 4v2zM4 17v-4a1 1 0 1 1 2 0v4z"/></svg>`;

export const reefIcon = new LabIcon({ name: 'reeflab:reef', svgstr: reefIconSvg });

const COMMAND_OPEN = 'reeflab:open';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'reeflab:plugin',
  description: 'ReefLab side panel: AI modules, deployments, serverless, storage and jobs.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette, ILayoutRestorer, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    // module descriptions are markdown: rendered (sanitised) by JupyterLab's renderer when it is there
    const panel = new ReefLabPanel(rendermime);
    panel.title.icon = reefIcon;
    panel.title.caption = 'ReefLab';
    shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, 'reeflab-panel');

    app.commands.addCommand(COMMAND_OPEN, {
      label: 'ReefLab: Open panel',
      execute: () => shell.activateById(panel.id)
    });
    palette?.addItem({ command: COMMAND_OPEN, category: 'ReefLab' });
  }
};

export default plugin;
