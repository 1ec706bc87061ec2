/**
 * The status-bar item "N running · M queued"; a click opens the Jobs panel.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { TextItem } from '@jupyterlab/statusbar';
import * as React from 'react';

import { JobsModel } from './model';

/** The text of the item: what runs now and what waits for a worker. */
export function statusText(model: JobsModel): string {
  const running = model.totals.running ?? 0;
  const queued = model.totals.queued ?? 0;
  return `${running} running · ${queued} queued`;
}

/** The status-bar widget. */
export class JobsStatus extends ReactWidget {
  constructor(options: JobsStatus.IOptions) {
    super();
    this._model = options.model;
    this._onClick = options.onClick;
    this.id = 'jupyter-jobs-status';
    this.addClass('jp-mod-highlighted');
    this.addClass('jp-JobsStatus');
    this.node.title = 'Background jobs: click to show the Jobs panel';
    this.node.setAttribute('role', 'button');
    this.node.addEventListener('click', this._onClick);
    this._model.changed.connect(this.update, this);
  }

  dispose(): void {
    this.node.removeEventListener('click', this._onClick);
    this._model.changed.disconnect(this.update, this);
    super.dispose();
  }

  protected render(): JSX.Element {
    return <TextItem source={statusText(this._model)} />;
  }

  private _model: JobsModel;
  private _onClick: () => void;
}

/** The JobsStatus namespace. */
export namespace JobsStatus {
  /** Options to build the item. */
  export interface IOptions {
    model: JobsModel;
    /** Called on a click: opens the panel. */
    onClick: () => void;
  }
}
