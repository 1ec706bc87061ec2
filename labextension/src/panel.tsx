/**
 * The Jobs panel in the left sidebar: a live list of jobs, newest first, with status filters, a
 * name search, "Mine / Everyone", progress bars, elapsed times and the actions on each job.
 *
 * The list is virtualized (only the rows in view are in the DOM) and loads older pages as the
 * user scrolls, so ten thousand jobs scroll as smoothly as ten. Everything from a job (name,
 * owner, messages) is rendered as React text, never as HTML.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import { addIcon, clearIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { CommandIDs } from './commands';
import { ActionButtons, ProgressBar, useClock } from './components';
import {
  basename,
  elapsedSeconds,
  finishedCounts,
  formatDuration,
  notebookPath,
  progressFraction,
  progressLabel,
  statusText,
  statusWord,
  userText
} from './format';
import { jobsIcon } from './icons';
import { JobsModel } from './model';
import type { IJob, JobStatus } from './types';
import { ACTIVE_STATUSES, STATUSES } from './types';
import { WorkersFooter } from './workers';

/** Height of one row in pixels; fixed so that the list can be virtualized. */
export const ROW_HEIGHT = 58;
/** Rows rendered above and below the visible ones. */
const OVERSCAN = 8;
/** Delay between the last keystroke in the search box and the new listing, in ms. */
const SEARCH_DELAY = 250;
/**
 * Shortest time between two renders while the list keeps changing, in ms. A queue draining
 * thousands of jobs changes the list at every event; rendering it every frame cost the page
 * (React, style, layout, paint) a third of a core that the server and its workers need on a
 * small machine. A few renders a second look just as live.
 */
export const RENDER_INTERVAL = 200;

/** The sidebar widget. */
export class JobsPanel extends ReactWidget {
  constructor(options: JobsPanel.IOptions) {
    super();
    this._model = options.model;
    this._commands = options.commands;
    this._serverRoot = options.serverRoot ?? '';
    this._trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this.id = 'jupyter-jobs-panel';
    this.title.icon = jobsIcon;
    this.title.caption = this._trans.__('Jobs');
    this.addClass('jp-JobsPanel');
    this._model.changed.connect(this._onModelChanged, this);
  }

  dispose(): void {
    this._model.changed.disconnect(this._onModelChanged, this);
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.update();
  }

  protected onUpdateRequest(msg: Message): void {
    this._rendered = Date.now();
    super.onUpdateRequest(msg);
  }

  protected render(): JSX.Element {
    return (
      <JobsView
        model={this._model}
        commands={this._commands}
        serverRoot={this._serverRoot}
        trans={this._trans}
      />
    );
  }

  /**
   * Render after a change: at once when the last render is `RENDER_INTERVAL` old, else when it
   * will be (one render for all the changes in between; Lumino conflates update requests too).
   */
  private _onModelChanged(): void {
    if (!this.isVisible || this._timer !== null) {
      return;
    }
    const wait = this._rendered + RENDER_INTERVAL - Date.now();
    if (wait <= 0) {
      this.update();
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this.isVisible) {
        this.update();
      }
    }, wait);
  }

  private _model: JobsModel;
  private _commands: CommandRegistry;
  private _serverRoot: string;
  private _trans: TranslationBundle;
  private _rendered = 0;
  private _timer: ReturnType<typeof setTimeout> | null = null;
}

/** The JobsPanel namespace. */
export namespace JobsPanel {
  /** Options to build the panel. */
  export interface IOptions {
    model: JobsModel;
    commands: CommandRegistry;
    /** The server's root directory, to turn absolute owner paths into openable ones. */
    serverRoot?: string;
    translator?: ITranslator;
  }
}

interface IViewProps {
  model: JobsModel;
  commands: CommandRegistry;
  serverRoot: string;
  trans: TranslationBundle;
}

/** The whole panel: toolbar, status line, list, and the workers at the bottom. */
function JobsView(props: IViewProps): JSX.Element {
  const { model, trans } = props;
  const now = useClock(model.jobs.some(job => ACTIVE_STATUSES.has(job.status)));
  return (
    <div className="jp-JobsPanel-body">
      <header className="jp-JobsPanel-header">
        <div className="jp-JobsPanel-titlebar">
          <h2 className="jp-JobsPanel-title">{trans.__('Jobs')}</h2>
          <NewJobButton {...props} />
          <WhoseFilter model={model} trans={trans} />
          <ClearFinishedButton {...props} />
        </div>
        <div className="jp-JobsPanel-searchRow">
          <SearchBox model={model} trans={trans} />
          <TypeFilter model={model} trans={trans} />
        </div>
        <StatusFilter model={model} trans={trans} />
      </header>
      {model.error && (
        <div className="jp-JobsPanel-error" role="alert">
          {trans.__('Cannot reach the jobs API: %1', model.error)}
        </div>
      )}
      <JobList {...props} now={now} />
      <WorkersFooter client={model.client} trans={trans} />
    </div>
  );
}

/** Opens the form that starts a job of a job type (typeDialog.tsx). */
function NewJobButton(props: IViewProps): JSX.Element {
  const { commands, trans } = props;
  const label = trans.__('Start a job of a job type');
  return (
    <button
      type="button"
      className="jp-JobsPanel-new"
      aria-label={label}
      title={label}
      onClick={() => void commands.execute(CommandIDs.newTypedJob)}
    >
      <addIcon.react tag="span" elementPosition="center" />
      <span>{trans.__('New job')}</span>
    </button>
  );
}

/** Deletes every finished job (after one confirmation); off while there is none. */
function ClearFinishedButton(props: IViewProps): JSX.Element {
  const { model, commands, trans } = props;
  const { total } = finishedCounts(model.totals);
  const label = trans.__('Clear finished jobs');
  return (
    <button
      type="button"
      className="jp-JobsPanel-clear"
      aria-label={label}
      title={label}
      disabled={total === 0}
      onClick={() => void commands.execute(CommandIDs.clearFinished)}
    >
      <clearIcon.react tag="span" elementPosition="center" />
      <span>{trans.__('Clear finished')}</span>
    </button>
  );
}

/**
 * "Mine" or "Everyone": whose jobs the list, its numbers and the status bar show. A user the
 * server lets see only their own jobs gets "Everyone" switched off.
 */
function WhoseFilter(props: {
  model: JobsModel;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { model, trans } = props;
  const me = model.me;
  if (me === null) {
    return null;
  }
  const mine = model.mine;
  return (
    <div
      className="jp-JobsPanel-whose"
      role="group"
      aria-label={trans.__('Whose jobs')}
    >
      <button
        type="button"
        className="jp-JobsPanel-chip"
        aria-pressed={mine}
        title={trans.__('Only your jobs (%1)', me.display_name || me.username)}
        onClick={() => void model.setFilter({ mine: true })}
      >
        {trans.__('Mine')}
      </button>
      <button
        type="button"
        className="jp-JobsPanel-chip"
        aria-pressed={!mine}
        disabled={!me.can_read_all}
        title={
          me.can_read_all
            ? trans.__("Every user's jobs")
            : trans.__('This server shows you your own jobs only')
        }
        onClick={() => void model.setFilter({ mine: false })}
      >
        {trans.__('Everyone')}
      </button>
    </div>
  );
}

/** Search by name; the listing follows after a short pause in typing. */
function SearchBox(props: {
  model: JobsModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { model, trans } = props;
  const [text, setText] = React.useState(model.filter.query);
  React.useEffect(() => {
    if (text === model.filter.query) {
      return;
    }
    const timer = setTimeout(
      () => void model.setFilter({ query: text }),
      SEARCH_DELAY
    );
    return () => clearTimeout(timer);
  }, [text]);
  return (
    <input
      className="jp-JobsPanel-search jp-mod-styled"
      type="search"
      placeholder={trans.__('Search by name or notebook')}
      aria-label={trans.__('Search jobs by name or notebook')}
      value={text}
      onChange={event => setText(event.target.value)}
    />
  );
}

/**
 * Jobs of one job type only (`?type=`), beside the search; shown once the server knows a job
 * type (read when the panel first renders), or while a type is chosen.
 */
function TypeFilter(props: {
  model: JobsModel;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { model, trans } = props;
  const [types, setTypes] = React.useState<string[]>([]);
  React.useEffect(() => {
    let live = true;
    model.client.types().then(
      found => live && setTypes(found.map(type => type.name)),
      error => console.warn('jupyter-jobs: cannot list the job types', error)
    );
    return () => {
      live = false;
    };
  }, [model]);
  const chosen = model.filter.type;
  const names = chosen && !types.includes(chosen) ? [chosen, ...types] : types;
  if (!names.length) {
    return null;
  }
  return (
    <select
      className="jp-JobsPanel-type jp-mod-styled"
      aria-label={trans.__('Filter by job type')}
      title={trans.__('Only the jobs of one job type')}
      value={chosen}
      onChange={event => void model.setFilter({ type: event.target.value })}
    >
      <option value="">{trans.__('All kinds')}</option>
      {names.map(name => (
        <option key={name} value={name}>
          {name}
        </option>
      ))}
    </select>
  );
}

/**
 * One toggle per status, each with its count; none pressed shows every job. In a narrow
 * sidebar a chip is the status's colour and its count (the name in its label and tooltip, and
 * shown once pressed), so all of them fit one row; a wide one shows every name.
 */
function StatusFilter(props: {
  model: JobsModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { model, trans } = props;
  const chosen = model.filter.statuses;
  const toggle = (status: JobStatus) => {
    const next = chosen.includes(status)
      ? chosen.filter(item => item !== status)
      : [...chosen, status];
    void model.setFilter({ statuses: next });
  };
  return (
    <div
      className="jp-JobsPanel-filters"
      role="group"
      aria-label={trans.__('Filter by status')}
    >
      <button
        type="button"
        className="jp-JobsPanel-chip"
        aria-pressed={chosen.length === 0}
        onClick={() => void model.setFilter({ statuses: [] })}
      >
        {trans.__('all')}
      </button>
      {STATUSES.map(status => {
        const count = model.counts[status] ?? 0;
        const word = statusWord(status, trans);
        const label = trans.__('%1: %2', word, count);
        return (
          <button
            key={status}
            type="button"
            className="jp-JobsPanel-chip"
            data-status={status}
            aria-pressed={chosen.includes(status)}
            aria-label={label}
            title={label}
            onClick={() => toggle(status)}
          >
            <span className="jp-JobsPanel-dot" data-status={status} />
            <span className="jp-JobsPanel-chip-label">{word}</span>
            <span className="jp-JobsPanel-count">{count}</span>
          </button>
        );
      })}
    </div>
  );
}

/** The virtualized list, with the "load more" footer. */
function JobList(props: IViewProps & { now: number }): JSX.Element {
  const { model, trans } = props;
  const jobs = model.jobs;
  const ref = React.useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = React.useState(0);
  const [height, setHeight] = React.useState(600);

  React.useEffect(() => {
    const node = ref.current;
    if (!node || typeof ResizeObserver === 'undefined') {
      return;
    }
    const observer = new ResizeObserver(() => setHeight(node.clientHeight));
    observer.observe(node);
    return () => observer.disconnect();
  }, []);

  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(
    jobs.length,
    Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN
  );

  // Load the next page before the user reaches the end of what is loaded.
  React.useEffect(() => {
    if (
      model.hasMore &&
      !model.loading &&
      !model.error &&
      last >= jobs.length
    ) {
      void model.loadMore();
    }
  }, [last, jobs.length, model.hasMore, model.loading]);

  if (model.loaded && !jobs.length && !model.loading) {
    const { statuses, query, mine, type } = model.filter;
    const filtered = statuses.length || query || mine || type;
    return (
      <div className="jp-JobsPanel-empty">
        {filtered
          ? trans.__('No job matches the filter.')
          : trans.__(
              'No jobs yet. Run a cell with %%job, or call jupyter_jobs.submit(), to start one.'
            )}
      </div>
    );
  }

  return (
    <div
      ref={ref}
      className="jp-JobsPanel-list"
      role="list"
      aria-label={trans.__('Jobs')}
      aria-busy={model.loading}
      onScroll={event => setScrollTop(event.currentTarget.scrollTop)}
    >
      <div
        className="jp-JobsPanel-rows"
        style={{ height: jobs.length * ROW_HEIGHT }}
      >
        {jobs.slice(first, last).map((job, offset) => (
          <JobRow
            key={job.id}
            job={job}
            top={(first + offset) * ROW_HEIGHT}
            {...props}
          />
        ))}
      </div>
      <div className="jp-JobsPanel-footer">
        {model.loading ? (
          <span>{trans.__('Loading…')}</span>
        ) : model.hasMore ? (
          <button
            type="button"
            className="jp-mod-styled jp-JobsPanel-more"
            onClick={() => void model.loadMore()}
          >
            {trans.__('Load more')}
          </button>
        ) : (
          jobs.length > 0 && (
            <span>{trans._n('%1 job', '%1 jobs', jobs.length)}</span>
          )
        )}
      </div>
    </div>
  );
}

interface IRowProps extends IViewProps {
  job: IJob;
  top: number;
  now: number;
}

/** One job: name, elapsed, owner (and user, when another's), status, progress and actions. */
function JobRow(props: IRowProps): JSX.Element {
  const { job, commands, model, now, trans } = props;
  const path = notebookPath(job.owner, props.serverRoot);
  const fraction = progressFraction(job.progress);
  const run =
    (command: string, args: Record<string, number | string>) =>
    (event: React.MouseEvent) => {
      event.stopPropagation();
      void commands.execute(command, args);
    };
  return (
    <div
      className="jp-JobsPanel-row"
      role="listitem"
      tabIndex={0}
      data-job-id={job.id}
      data-status={job.status}
      style={{ top: props.top, height: ROW_HEIGHT }}
      title={trans.__('Job %1: %2', job.id, job.name)}
      onClick={() => void commands.execute(CommandIDs.show, { id: job.id })}
      onKeyDown={event => {
        if (event.key === 'Enter') {
          void commands.execute(CommandIDs.show, { id: job.id });
        }
      }}
    >
      <div className="jp-JobsPanel-line">
        <span className="jp-JobsPanel-dot" data-status={job.status} />
        <span className="jp-JobsPanel-name">{job.name}</span>
        <span className="jp-JobsPanel-elapsed" title={trans.__('Elapsed')}>
          {formatDuration(elapsedSeconds(job, now))}
        </span>
        <ActionButtons
          job={job}
          actions={model.actionsFor(job)}
          commands={commands}
          trans={trans}
        />
      </div>
      <div className="jp-JobsPanel-line jp-JobsPanel-meta">
        <span className="jp-JobsPanel-status" data-status={job.status}>
          {statusText(job, trans)}
        </span>
        {path ? (
          <button
            type="button"
            className="jp-JobsPanel-owner jp-JobsPanel-link"
            title={trans.__('Open %1', path)}
            onClick={run(CommandIDs.openNotebook, { path })}
          >
            {basename(path)}
          </button>
        ) : (
          <span className="jp-JobsPanel-owner" title={job.owner}>
            {job.owner}
          </span>
        )}
        {job.user && !model.isMine(job.user) && (
          <span
            className="jp-JobsPanel-user"
            title={trans.__('User: %1', userText(job) ?? job.user)}
          >
            {job.user_display_name || job.user}
          </span>
        )}
        <span className="jp-JobsPanel-progress-label">
          {progressLabel(job.progress)}
        </span>
      </div>
      <ProgressBar job={job} fraction={fraction} trans={trans} />
    </div>
  );
}
