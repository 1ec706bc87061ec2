/**
 * The status-bar item "N running · M queued"; a click, or Enter or Space once it has the
 * keyboard focus, opens the Jobs panel.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { TextItem } from '@jupyterlab/statusbar';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import * as React from 'react';

import { JobsModel } from './model';

/** The text of the item: what runs now and what waits for a worker. */
export function statusText(
  model: JobsModel,
  trans: TranslationBundle = nullTranslator.load('jupyter_jobs')
): string {
  return trans.__(
    '%1 running · %2 queued',
    model.totals.running ?? 0,
    model.totals.queued ?? 0
  );
}

/** The status-bar widget. */
export class JobsStatus extends ReactWidget {
  constructor(options: JobsStatus.IOptions) {
    super();
    this._model = options.model;
    this._onClick = options.onClick;
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this.id = 'jupyter-jobs-status';
    this.addClass('jp-mod-highlighted');
    this.addClass('jp-JobsStatus');
    this.node.title = this._trans.__(
      'Background jobs: click to show the Jobs panel'
    );
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.addEventListener('click', this._onClick);
    this.node.addEventListener('keydown', this._onKey);
    this._model.changed.connect(this.update, this);
  }

  dispose(): void {
    this.node.removeEventListener('click', this._onClick);
    this.node.removeEventListener('keydown', this._onKey);
    this._model.changed.disconnect(this.update, this);
    super.dispose();
  }

  protected render(): JSX.Element {
    const text = statusText(this._model, this._trans);
    // A screen reader hears what the item says and what it does.
    this.node.setAttribute(
      'aria-label',
      this._trans.__('Background jobs: %1. Show the Jobs panel', text)
    );
    return <TextItem source={text} />;
  }

  /** Enter and Space press the item, as they press a button. */
  private _onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      this._onClick();
    }
  };

  private _model: JobsModel;
  private _onClick: () => void;
  private _trans: TranslationBundle;
}

/** The JobsStatus namespace. */
export namespace JobsStatus {
  /** Options to build the item. */
  export interface IOptions {
    model: JobsModel;
    /** Called on a click: opens the panel. */
    onClick: () => void;
    translator?: ITranslator;
  }
}
