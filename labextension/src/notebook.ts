/** Notebook helpers: a notebook's cells, where an output lives, inserting a cell below it. */
import { INotebookTracker, Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

export function notebookCells(panel: NotebookPanel | null): { type: string; source: string }[] {
  const cells = panel?.content.model?.cells;
  if (!cells) {
    return [];
  }
  const out: { type: string; source: string }[] = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    out.push({ type: c.type, source: c.sharedModel.getSource() });
  }
  return out;
}

/** The notebook and cell index holding `node` (an output's DOM node), if it is in one. */
export function cellOf(tracker: INotebookTracker, node: HTMLElement): { panel: NotebookPanel; index: number } | null {
  let found: { panel: NotebookPanel; index: number } | null = null;
  tracker.forEach(panel => {
    if (found || !panel.node.contains(node)) {
      return;
    }
    const index = panel.content.widgets.findIndex(cell => cell.node.contains(node));
    if (index >= 0) {
      found = { panel, index };
    }
  });
  return found;
}

/** Insert a code cell holding `code` right below cell `index` and select it. */
export function insertBelow(notebook: Notebook, index: number, code: string): void {
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  NotebookActions.insertBelow(notebook);
  const cell = notebook.activeCell;
  if (cell) {
    if (cell.model.type !== 'code') {
      NotebookActions.changeCellType(notebook, 'code');
    }
    notebook.activeCell!.model.sharedModel.setSource(code);
  }
}
