/**
 * The Schedules view of the sidebar (name, target, next run, last run, pause/resume/edit/delete
 * and each schedule's run history) and the alert for a failed scheduled run.
 *
 * Schedules are few, so the view reads them all again whenever the event stream announces a
 * schedule change or a scheduled run ends; nothing is cached between reads.
 */

import {
  Notification,
  ReactWidget,
  showErrorMessage
} from '@jupyterlab/apputils';
import type { Event } from '@jupyterlab/services';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import { IDisposable } from '@lumino/disposable';
import * as React from 'react';

import { JobsClient } from './client';
import {
  elapsedSeconds,
  formatDuration,
  formatTime,
  statusWord
} from './format';
import type { INotebookAwareJob, ISchedule } from './nbtypes';
import { isNotebookJob } from './nbtypes';
import { parseJobEvents } from './events';

/** Runs shown in a schedule's history. */
const HISTORY_SIZE = 20;
/** Scheduled runs remembered by the alerts (the newest ones; a run's news comes within seconds). */
const REMEMBERED_RUNS = 10_000;

/** What an emission of the event stream says about scheduled runs (none for other events). */
export function scheduleNews(
  emission: Record<string, unknown>
): IScheduleNews[] {
  return (parseJobEvents(emission) ?? [])
    .filter(entry => entry.schedule_id !== null)
    .map(entry => ({
      scheduleId: entry.schedule_id as number,
      run: entry.id,
      failed: entry.status === 'failed',
      name: entry.name
    }));
}

/** A scheduled run's news. */
export interface IScheduleNews {
  scheduleId: number;
  run: number;
  failed: boolean;
  name: string;
}

/**
 * Raises a notification for each failed scheduled run, whoever watches (or not) the notebook:
 * nobody may be looking when a schedule fires at night.
 */
export class ScheduleAlerts implements IDisposable {
  constructor(options: ScheduleAlerts.IOptions) {
    this._events = options.events;
    this._showJob = options.showJob;
    this._showSchedules = options.showSchedules;
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this._events?.stream.connect(this._onEmission, this);
  }

  /** Whether failures are announced (the `notifications` setting). */
  enabled = true;

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether job `id` is a scheduled run these alerts have heard of. */
  isScheduledRun(id: number): boolean {
    return this._runs.has(id);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._events?.stream.disconnect(this._onEmission, this);
  }

  private _onEmission(_: unknown, emission: Event.Emission): void {
    for (const news of scheduleNews(emission)) {
      this._announce(news);
    }
  }

  private _announce(news: IScheduleNews): void {
    this._remember(news.run);
    if (!news.failed || this._seen.has(news.run)) {
      return;
    }
    const id = news.run;
    this._seen.add(id);
    if (!this.enabled) {
      return;
    }
    const trans = this._trans;
    Notification.error(
      trans.__('Scheduled run %1 “%2” failed', id, news.name),
      {
        autoClose: false,
        actions: [
          { label: trans.__('Show job'), callback: () => this._showJob(id) },
          {
            label: trans.__('Show schedules'),
            callback: () => this._showSchedules()
          }
        ],
        data: { jobId: id, scheduleId: news.scheduleId }
      }
    );
  }

  private _events: Event.IManager | null;
  private _showJob: (id: number) => void;
  private _showSchedules: () => void;
  private _trans: TranslationBundle;
  private _remember(id: number): void {
    this._runs.delete(id);
    this._runs.add(id);
    if (this._runs.size > REMEMBERED_RUNS) {
      const oldest = this._runs.values().next().value as number;
      this._runs.delete(oldest);
      this._seen.delete(oldest);
    }
  }

  private _runs = new Set<number>();
  private _seen = new Set<number>();
  private _isDisposed = false;
}

/** The ScheduleAlerts namespace. */
export namespace ScheduleAlerts {
  export interface IOptions {
    events: Event.IManager | null;
    showJob: (id: number) => void;
    showSchedules: () => void;
    translator?: ITranslator;
  }
}

/** The sidebar's Schedules view. */
export class SchedulesView extends ReactWidget {
  constructor(options: SchedulesView.IOptions) {
    super();
    this.id = 'jupyter-jobs-schedules';
    this.addClass('jp-JobsSchedules');
    this._options = options;
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this.title.caption = this._trans.__('Schedules');
    options.events?.stream.connect(this._onEmission, this);
  }

  /** The schedules as last read. */
  schedules: ISchedule[] = [];

  /** The runs of each opened history, by schedule id. */
  history = new Map<number, INotebookAwareJob[]>();

  /** The last error, or ''. */
  error = '';

  /** Whether the first read has finished. */
  loaded = false;

  /** Read the schedules (and the open histories) again. */
  async refresh(): Promise<void> {
    const client = this._options.client;
    try {
      this.schedules = await client.schedules();
      this.error = '';
      for (const id of [...this.history.keys()]) {
        await this._loadHistory(id);
      }
    } catch (error) {
      this.error = error instanceof Error ? error.message : String(error);
    }
    this.loaded = true;
    this.update();
  }

  /** Pause or resume a schedule. */
  togglePause(schedule: ISchedule): Promise<void> {
    const client = this._options.client;
    return this._act(this._trans.__('Could not change the schedule'), () =>
      schedule.paused
        ? client.resumeSchedule(schedule.id)
        : client.pauseSchedule(schedule.id)
    );
  }

  /** Delete a schedule (its past runs stay in the jobs list). */
  remove(schedule: ISchedule): Promise<void> {
    const client = this._options.client;
    return this._act(this._trans.__('Could not delete the schedule'), () =>
      client.deleteSchedule(schedule.id)
    );
  }

  /** Show or hide a schedule's run history. */
  async toggleHistory(id: number): Promise<void> {
    if (this.history.has(id)) {
      this.history.delete(id);
      this.update();
      return;
    }
    this.history.set(id, []);
    await this._loadHistory(id);
    this.update();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._options.events?.stream.disconnect(this._onEmission, this);
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected render(): JSX.Element {
    return (
      <SchedulesList
        view={this}
        trans={this._trans}
        edit={this._options.edit}
        openJob={this._options.openJob}
        openResult={this._options.openResult}
        runNotebook={this._options.runNotebook}
        newSchedule={this._options.newSchedule}
      />
    );
  }

  private async _loadHistory(id: number): Promise<void> {
    const page = await this._options.client.list({
      schedule: id,
      limit: HISTORY_SIZE
    });
    this.history.set(id, page.jobs as INotebookAwareJob[]);
  }

  private async _act(title: string, action: () => Promise<unknown>) {
    try {
      await action();
    } catch (error) {
      void showErrorMessage(title, error as Error);
    }
    await this.refresh();
  }

  private _onEmission(_: unknown, emission: Event.Emission): void {
    if (scheduleNews(emission).length && this.isVisible) {
      void this.refresh();
    }
  }

  private _options: SchedulesView.IOptions;
  private _trans: TranslationBundle;
}

/** The SchedulesView namespace. */
export namespace SchedulesView {
  export interface IOptions {
    client: JobsClient;
    events: Event.IManager | null;
    /** Open the edit dialog of a schedule. */
    edit: (schedule: ISchedule) => void;
    openJob: (id: number) => void;
    openResult: (id: number) => void;
    /** Open the Run as job… dialog for the current notebook. */
    runNotebook: () => void;
    /** Open the dialog that makes a schedule (of the current notebook, or of a job type). */
    newSchedule: () => void;
    translator?: ITranslator;
  }
}

function SchedulesList(props: {
  view: SchedulesView;
  trans: TranslationBundle;
  edit: (schedule: ISchedule) => void;
  openJob: (id: number) => void;
  openResult: (id: number) => void;
  runNotebook: () => void;
  newSchedule: () => void;
}): JSX.Element {
  const { view, trans } = props;
  return (
    <div className="jp-JobsSchedules-content">
      <header className="jp-JobsSchedules-header">
        <h2>{trans.__('Schedules')}</h2>
        <button
          type="button"
          className="jp-mod-styled"
          onClick={() => void view.refresh()}
        >
          {trans.__('Refresh')}
        </button>
        <button
          type="button"
          className="jp-mod-styled jp-JobsSchedules-new"
          onClick={props.newSchedule}
        >
          {trans.__('New schedule…')}
        </button>
        <button
          type="button"
          className="jp-mod-styled jp-JobsSchedules-run"
          onClick={props.runNotebook}
        >
          {trans.__('Run notebook as job…')}
        </button>
      </header>
      {view.error && (
        <div className="jp-JobsPanel-error" role="alert">
          {trans.__('Cannot read the schedules: %1', view.error)}
        </div>
      )}
      {view.loaded && !view.schedules.length && !view.error && (
        <div className="jp-JobDetail-muted">
          {trans.__(
            'No schedules. Choose “New schedule…”, or right-click a notebook and choose “Run as job…”.'
          )}
        </div>
      )}
      <ul className="jp-JobsSchedules-list">
        {view.schedules.map(schedule => (
          <li
            key={schedule.id}
            className="jp-JobsSchedules-item"
            data-schedule-id={schedule.id}
          >
            <div className="jp-JobsSchedules-name">{schedule.name}</div>
            <div className="jp-JobsSchedules-target">
              {targetText(schedule.target, trans)}
              {' · '}
              {schedule.cron !== null
                ? `${schedule.cron} (${schedule.timezone ?? trans.__('server time')})`
                : trans.__('every %1', formatDuration(schedule.every ?? 0))}
            </div>
            <div className="jp-JobsSchedules-times">
              <span className="jp-JobsSchedules-next">
                {schedule.paused
                  ? trans.__('Paused')
                  : trans.__('Next: %1', formatTime(schedule.next_run))}
              </span>
              {schedule.last_run && (
                <span
                  className="jp-JobsPanel-status jp-JobsSchedules-last"
                  data-status={schedule.last_run.status}
                >
                  {trans.__(
                    'Last: %1',
                    statusWord(schedule.last_run.status, trans)
                  )}
                </span>
              )}
            </div>
            <div className="jp-JobsSchedules-actions">
              <button
                type="button"
                className="jp-mod-styled jp-JobsSchedules-pause"
                onClick={() => void view.togglePause(schedule)}
              >
                {schedule.paused ? trans.__('Resume') : trans.__('Pause')}
              </button>
              {schedule.target.kind !== 'function' && (
                <button
                  type="button"
                  className="jp-mod-styled jp-JobsSchedules-edit"
                  onClick={() => props.edit(schedule)}
                >
                  {trans.__('Edit')}
                </button>
              )}
              <button
                type="button"
                className="jp-mod-styled jp-JobsSchedules-delete"
                onClick={() => void view.remove(schedule)}
              >
                {trans.__('Delete')}
              </button>
              <button
                type="button"
                className="jp-mod-styled jp-JobsSchedules-history"
                aria-expanded={view.history.has(schedule.id)}
                onClick={() => void view.toggleHistory(schedule.id)}
              >
                {trans.__('Runs')}
              </button>
            </div>
            {view.history.has(schedule.id) && (
              <RunHistory
                runs={view.history.get(schedule.id)!}
                trans={trans}
                openJob={props.openJob}
                openResult={props.openResult}
              />
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** What a schedule runs, in words: its notebook, its job type, or a function. */
function targetText(
  target: ISchedule['target'],
  trans: TranslationBundle
): string {
  switch (target.kind) {
    case 'notebook':
      return target.path ?? '';
    case 'typed':
      return trans.__('job type %1', target.type ?? '');
    default:
      return trans.__('a function');
  }
}

function RunHistory(props: {
  runs: INotebookAwareJob[];
  trans: TranslationBundle;
  openJob: (id: number) => void;
  openResult: (id: number) => void;
}): JSX.Element {
  const { runs, trans } = props;
  if (!runs.length) {
    return <div className="jp-JobDetail-muted">{trans.__('No runs yet.')}</div>;
  }
  const now = Date.now() / 1000;
  return (
    <table className="jp-JobsSchedules-runs">
      <tbody>
        {runs.map(job => (
          <tr key={job.id} data-job-id={job.id}>
            <td>
              <button
                type="button"
                className="jp-JobsPanel-link"
                onClick={() => props.openJob(job.id)}
              >
                {`#${job.id}`}
              </button>
            </td>
            <td>{formatTime(job.scheduled_time ?? job.created_at)}</td>
            <td>
              <span className="jp-JobsPanel-status" data-status={job.status}>
                {statusWord(job.status, trans)}
              </span>
            </td>
            <td>
              {job.started_at === null
                ? '—'
                : formatDuration(elapsedSeconds(job, now))}
            </td>
            <td>
              {isNotebookJob(job) && job.started_at !== null && (
                <button
                  type="button"
                  className="jp-JobsPanel-link jp-JobsSchedules-result"
                  onClick={() => props.openResult(job.id)}
                >
                  {trans.__('Output notebook')}
                </button>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
