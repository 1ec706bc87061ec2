/**
 * Keeps the jobs model live: server events first, polling as the fallback.
 *
 * JupyterLab's EventManager (`app.serviceManager.events`) holds the websocket on
 * `/api/events/subscribe`; we pick our schema's events off its stream. It does not say whether its
 * socket is up, so we judge from what we see: while our events arrive, a slow poll only guards
 * against a missed one (and finds out within seconds if the stream is dead); when there is no
 * event manager, or a poll finds changes no event announced, we poll every few seconds until
 * events flow again.
 */

import type { Event } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';

import { JobsModel } from './model';
import type { IJobEvent, JobAction, JobStatus } from './types';
import { EVENT_SCHEMA_ID, STATUSES } from './types';

const ACTIONS: readonly JobAction[] = [
  'created',
  'transition',
  'progress',
  'cancel_requested',
  'deleted'
];

/**
 * Read one emission of the event stream as a job event, or null when it is another schema's.
 * A job event with a malformed payload is reported, not dropped silently.
 */
export function parseJobEvent(emission: {
  [key: string]: unknown;
}): IJobEvent | null {
  if (emission.schema_id !== EVENT_SCHEMA_ID) {
    return null;
  }
  const { action, id, status } = emission;
  if (
    typeof id !== 'number' ||
    !ACTIONS.includes(action as JobAction) ||
    !STATUSES.includes(status as JobStatus)
  ) {
    console.warn('jupyter-jobs: ignoring a malformed job event', emission);
    return null;
  }
  const previous = emission.previous;
  return {
    action: action as JobAction,
    id,
    name: typeof emission.name === 'string' ? emission.name : '',
    owner: typeof emission.owner === 'string' ? emission.owner : '',
    status: status as JobStatus,
    previous: STATUSES.includes(previous as JobStatus)
      ? (previous as JobStatus)
      : null,
    reason: (emission.reason as IJobEvent['reason']) ?? null,
    attempt: typeof emission.attempt === 'number' ? emission.attempt : 0,
    progress: (emission.progress as IJobEvent['progress']) ?? null
  };
}

/** Feeds the model from the event stream and runs the reconciling poll. */
export class LiveUpdates implements IDisposable {
  constructor(options: LiveUpdates.IOptions) {
    this._model = options.model;
    this._events = options.events ?? null;
    this._fast = options.fastInterval ?? 3000;
    this._slow = options.slowInterval ?? 10000;
    this._quiet = options.quietAfter ?? 10000;
    this._events?.stream.connect(this._onEmission, this);
    // Trust the event stream until a poll shows it missed something.
    this._live = this._events !== null;
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: {
        interval: this._live ? this._slow : this._fast,
        backoff: true,
        max: 60000
      },
      name: 'jupyter-jobs:poll',
      standby: 'when-hidden'
    });
    void this._poll.start();
  }

  /** Whether events are believed to be flowing (so the poll runs slowly). */
  get live(): boolean {
    return this._live;
  }

  /** Whether this object is disposed. */
  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Reconcile now (after an action, or when the panel is shown). */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  /** Stop listening and polling. */
  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._events?.stream.disconnect(this._onEmission, this);
    this._poll.dispose();
  }

  private _onEmission(_: unknown, emission: Event.Emission): void {
    const event = parseJobEvent(emission);
    if (!event) {
      return;
    }
    this._lastEvent = Date.now();
    this._setLive(true);
    this._model.applyEvent(event);
  }

  private async _tick(): Promise<void> {
    const wasLoaded = this._model.loaded;
    const changed = await this._model.refresh();
    if (this._model.error) {
      // Let the poll back off while the server is unreachable.
      throw new Error(this._model.error);
    }
    // A change that no recent event announced: events are not reaching us.
    const quiet = Date.now() - this._lastEvent > this._quiet;
    if (!this._events || (wasLoaded && changed && quiet)) {
      this._setLive(false);
    }
  }

  private _setLive(live: boolean): void {
    if (live === this._live) {
      return;
    }
    this._live = live;
    this._poll.frequency = {
      interval: live ? this._slow : this._fast,
      backoff: true,
      max: 60000
    };
  }

  private _model: JobsModel;
  private _events: Event.IManager | null;
  private _poll: Poll;
  private _fast: number;
  private _slow: number;
  private _quiet: number;
  private _live: boolean;
  private _lastEvent = 0;
}

/** The LiveUpdates namespace. */
export namespace LiveUpdates {
  /** Options for live updates. */
  export interface IOptions {
    model: JobsModel;
    /** The server's event manager; without it the model is polled. */
    events?: Event.IManager | null;
    /** Poll interval while events are not flowing, in ms (default 3000). */
    fastInterval?: number;
    /** Poll interval while events flow, in ms (default 10000). */
    slowInterval?: number;
    /** How long without events before a poll's news means events are lost, in ms. */
    quietAfter?: number;
  }
}
