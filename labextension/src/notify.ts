/**
 * Notifications when jobs finish or fail, through JupyterLab's notification API, each with a
 * button that opens the job. Switched on and off by the `notifications` setting. A cancelled
 * job is not announced: somebody asked for that, and the sidebar shows it.
 *
 * Transitions are collected for a moment first: when a map() of 500 jobs ends, the user gets one
 * summary, not 500 toasts.
 */

import { Notification } from '@jupyterlab/apputils';
import {
  nullTranslator,
  TranslationBundle,
  ITranslator
} from '@jupyterlab/translation';
import { IDisposable } from '@lumino/disposable';

import { IJobTransition, JobsModel } from './model';
import { reasonWord } from './format';

/** Sends the notifications for one model. */
export class JobNotifier implements IDisposable {
  constructor(options: JobNotifier.IOptions) {
    this._model = options.model;
    this._showJob = options.showJob;
    this._showAll = options.showAll;
    this._window = options.window ?? 500;
    this._maxSingle = options.maxSingle ?? 3;
    this._announcedElsewhere = options.announcedElsewhere ?? (() => false);
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this._model.transition.connect(this._onTransition, this);
  }

  /** Whether notifications are sent (the `notifications` setting). */
  enabled = true;

  /** Whether the notifier is disposed. */
  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._model.transition.disconnect(this._onTransition, this);
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
  }

  /**
   * Transitions are gathered even while switched off; `enabled` is read when the batch is sent.
   * Switching on reloads the settings from the server after saving them, and a job that ends in
   * that moment is still announced.
   */
  private _onTransition(model: JobsModel, transition: IJobTransition): void {
    if (transition.status !== 'succeeded' && transition.status !== 'failed') {
      return;
    }
    if (!model.isMine(transition.user)) {
      return; // on a shared server, other users' jobs are theirs to hear about
    }
    this._batch.push(transition);
    if (this._timer === null) {
      this._timer = setTimeout(() => this._flush(), this._window);
    }
  }

  private _flush(): void {
    this._timer = null;
    // Read at the end of the window: whoever announces these jobs has seen their events by now.
    const batch = this._batch.filter(t => !this._announcedElsewhere(t.id));
    this._batch = [];
    if (!this.enabled || !batch.length) {
      return;
    }
    if (batch.length <= this._maxSingle) {
      batch.forEach(transition => this._notifyOne(transition));
      return;
    }
    const trans = this._trans;
    const failed = batch.filter(t => t.status === 'failed').length;
    const message = failed
      ? trans.__('%1 jobs finished, %2 failed', batch.length, failed)
      : trans.__('%1 jobs finished', batch.length);
    const options = {
      autoClose: failed ? (false as const) : 8000,
      actions: [
        { label: trans.__('Show jobs'), callback: () => this._showAll() }
      ]
    };
    if (failed) {
      Notification.error(message, options);
    } else {
      Notification.success(message, options);
    }
  }

  private _notifyOne(transition: IJobTransition): void {
    const trans = this._trans;
    const options = {
      autoClose: transition.status === 'failed' ? (false as const) : 8000,
      actions: [
        {
          label: trans.__('Show job'),
          caption: trans.__('Open the details of job %1', transition.id),
          callback: () => this._showJob(transition.id)
        }
      ],
      data: { jobId: transition.id }
    };
    if (transition.status === 'failed') {
      Notification.error(
        transition.reason
          ? trans.__(
              'Job %1 “%2” failed (%3)',
              transition.id,
              transition.name,
              reasonWord(transition.reason, trans)
            )
          : trans.__('Job %1 “%2” failed', transition.id, transition.name),
        options
      );
    } else {
      Notification.success(
        trans.__('Job %1 “%2” finished', transition.id, transition.name),
        options
      );
    }
  }

  private _model: JobsModel;
  private _showJob: (id: number) => void;
  private _showAll: () => void;
  private _window: number;
  private _maxSingle: number;
  private _announcedElsewhere: (id: number) => boolean;
  private _trans: TranslationBundle;
  private _batch: IJobTransition[] = [];
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _isDisposed = false;
}

/** The JobNotifier namespace. */
export namespace JobNotifier {
  /** Options of the notifier. */
  export interface IOptions {
    model: JobsModel;
    /** Open a job's detail view (the notification's button). */
    showJob: (id: number) => void;
    /** Open the Jobs panel (the summary's button). */
    showAll: () => void;
    /** How long transitions are collected before notifying, in ms (default 500). */
    window?: number;
    /** Up to this many finished jobs get one notification each; more get a summary. */
    maxSingle?: number;
    /**
     * Jobs this notifier leaves out: scheduled runs, whose failures the schedule alerts announce
     * (a schedule every minute would otherwise say "finished" every minute).
     */
    announcedElsewhere?: (id: number) => boolean;
    translator?: ITranslator;
  }
}
