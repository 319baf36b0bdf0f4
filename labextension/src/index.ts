/**
 * The ipar_widgets JupyterLab extension: the "Parallel Clusters" sidebar and its commands,
 * and the notification when a job shown with `ar.display()` ends (./notify.ts).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { IClusterKey } from './api';
import { insertClientCode } from './clientcode';
import { ClustersModel } from './model';
import { ClustersPanel, PANEL_ID } from './panel';
import notifyPlugin from './notify';

namespace CommandIDs {
  export const showPanel = 'ipar:show-clusters';
  export const insertClientCode = 'ipar:insert-client-code';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ipar_widgets:clusters',
  description: 'A sidebar to start, watch and stop ipar_widgets clusters.',
  autoStart: true,
  optional: [ILayoutRestorer, INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    palette: ICommandPalette | null
  ) => {
    const { commands, shell } = app;

    /** Insert the code into the last active notebook and show it; throws if there is none. */
    const insert = (key: IClusterKey): void => {
      if (notebooks === null) {
        throw new Error('The notebook extension is not available in this JupyterLab.');
      }
      insertClientCode(notebooks, key);
      shell.activateById(notebooks.currentWidget!.id);
    };

    commands.addCommand(CommandIDs.insertClientCode, {
      label: 'Insert Client Code for a Parallel Cluster',
      describedBy: {
        args: {
          type: 'object',
          properties: {
            profile: { type: 'string' },
            cluster_id: { type: 'string' }
          },
          required: ['profile']
        }
      },
      execute: args =>
        insert({
          profile: String(args.profile ?? 'default'),
          cluster_id: String(args.cluster_id ?? '')
        })
    });

    const panel = new ClustersPanel(new ClustersModel(), { insertClientCode: insert });
    shell.add(panel, 'left', { rank: 750 });
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    commands.addCommand(CommandIDs.showPanel, {
      label: 'Show Parallel Clusters',
      caption: 'Start, watch and stop ipar_widgets clusters',
      execute: () => shell.activateById(PANEL_ID)
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.showPanel, category: 'Parallel Clusters' });
    }
  }
};

export default [plugin, notifyPlugin];
