/**
 * Keeps the jobs model live: server events first, polling as the fallback.
 *
 * JupyterLab's EventManager (`app.serviceManager.events`) holds the websocket on
 * `/api/events/subscribe`; we pick our schema's events off its stream. It does not say whether its
 * socket is up, so we judge from what we see: while our events arrive, a slow poll only guards
 * against a missed one (and finds out within seconds if the stream is dead); when there is no
 * event manager, or a poll finds changes no event announced, we poll every few seconds until
 * events flow again.
 *
 * Reconnecting (a server restart): what changed while the stream was down came with no event, so
 * the list and its numbers are read again as soon as the panel is back in touch, whichever
 * way comes first: the first event after a failed poll, an event that does not follow from what
 * the list shows (a transition from another status), or the next poll, which retries every few
 * seconds while the server is unreachable instead of backing off for a minute.
 */

import type { Event } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { IPoll, Poll } from '@lumino/polling';

import { JobsModel } from './model';
import type { Action, IJobEvent, JobAction, JobStatus } from './types';
import { ACTIONS, EVENT_SCHEMA_ID, STATUSES } from './types';

const EVENT_ACTIONS: readonly JobAction[] = [
  'created',
  'transition',
  'progress',
  'cancel_requested',
  'released',
  'deleted'
];

/**
 * Read one emission of the event stream as its job entries (the changes of one window, one entry
 * per job: schema version 4), or null when it is another schema's. A malformed entry is
 * reported, not dropped silently.
 */
export function parseJobEvents(emission: {
  [key: string]: unknown;
}): IJobEvent[] | null {
  if (emission.schema_id !== EVENT_SCHEMA_ID) {
    return null;
  }
  if (!Array.isArray(emission.jobs)) {
    console.warn('jupyter-jobs: ignoring a malformed job event', emission);
    return [];
  }
  const events: IJobEvent[] = [];
  for (const entry of emission.jobs) {
    const event = parseEntry(entry ?? {});
    if (event) {
      events.push(event);
    }
  }
  return events;
}

/** One entry of a job event, or null (reported) when it is malformed. */
function parseEntry(emission: { [key: string]: unknown }): IJobEvent | null {
  const { action, id, status } = emission;
  if (
    typeof id !== 'number' ||
    !EVENT_ACTIONS.includes(action as JobAction) ||
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
    user: typeof emission.user === 'string' ? emission.user : '',
    status: status as JobStatus,
    previous: STATUSES.includes(previous as JobStatus)
      ? (previous as JobStatus)
      : null,
    reason: (emission.reason as IJobEvent['reason']) ?? null,
    attempt: typeof emission.attempt === 'number' ? emission.attempt : 0,
    progress: (emission.progress as IJobEvent['progress']) ?? null,
    actions: Array.isArray(emission.actions)
      ? emission.actions.filter((a): a is Action => ACTIONS.includes(a))
      : [],
    schedule_id:
      typeof emission.schedule_id === 'number' ? emission.schedule_id : null,
    type: typeof emission.type === 'string' ? emission.type : null,
    summary: (emission.summary as IJobEvent['summary']) ?? null
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
    this._retryMax = options.retryMax ?? 10000;
    this._events?.stream.connect(this._onEmission, this);
    // Trust the event stream until a poll shows it missed something.
    this._live = this._events !== null;
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: this._frequency(),
      name: 'jupyter-jobs:poll',
      standby: 'when-hidden'
    });
    // The constructor stretches `max` to at least 30 s; the setter takes it as given.
    this._poll.frequency = this._frequency();
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
    const events = parseJobEvents(emission);
    if (!events) {
      return;
    }
    this._lastEvent = Date.now();
    this._setLive(true);
    const inStep = this._model.applyEvents(events);
    if (this._offline || !inStep) {
      // Back in touch, or events were missed: what changed meanwhile came with no event.
      this._offline = false;
      void this.refresh();
    }
  }

  private async _tick(): Promise<void> {
    const wasLoaded = this._model.loaded;
    const changed = await this._model.refresh();
    if (this._model.error) {
      // Retry (with a short backoff) while the server is unreachable.
      this._offline = true;
      throw new Error(this._model.error);
    }
    this._offline = false;
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
    this._poll.frequency = this._frequency();
  }

  /** The poll's rhythm: slow while events flow; a failed poll is retried within `retryMax`. */
  private _frequency(): IPoll.Frequency {
    const interval = this._live ? this._slow : this._fast;
    return {
      interval,
      backoff: true,
      max: Math.max(interval, this._retryMax)
    };
  }

  private _model: JobsModel;
  private _events: Event.IManager | null;
  private _poll: Poll;
  private _fast: number;
  private _slow: number;
  private _quiet: number;
  private _retryMax: number;
  private _live: boolean;
  private _offline = false;
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
    /** Longest wait before retrying a failed poll, in ms (default 10000). */
    retryMax?: number;
  }
}
