/** The "Insert client code" action: code that connects a notebook to a cluster. */
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { IClusterKey } from './api';

/** A Python string literal for a profile name or cluster id. */
function pyString(value: string): string {
  return JSON.stringify(value);
}

/** The two lines that connect to the cluster, as the user would type them. */
export function clientCode(key: IClusterKey): string {
  const args = [`profile=${pyString(key.profile)}`];
  if (key.cluster_id) {
    args.push(`cluster_id=${pyString(key.cluster_id)}`);
  }
  return `import ipar_widgets as ipp\n\nrc = ipp.Client(${args.join(', ')})`;
}

/**
 * Put the client code into the notebook the user worked in last: into its active cell if
 * that is an empty code cell, else into a new cell below it.  Returns the notebook's title,
 * or throws an Error that says what to do.
 */
export function insertClientCode(tracker: INotebookTracker, key: IClusterKey): string {
  const panel = tracker.currentWidget;
  if (!panel) {
    throw new Error('Open a notebook first: the client code goes into the active notebook.');
  }
  const notebook = panel.content;
  const active = notebook.activeCell;
  const reuse =
    active !== null &&
    active.model.type === 'code' &&
    active.model.sharedModel.getSource().trim() === '';
  if (!reuse) {
    NotebookActions.insertBelow(notebook);
  }
  const cell = notebook.activeCell;
  if (cell === null) {
    throw new Error(`Could not add a cell to ${panel.title.label}.`);
  }
  cell.model.sharedModel.setSource(clientCode(key));
  notebook.mode = 'command';
  return panel.title.label;
}
