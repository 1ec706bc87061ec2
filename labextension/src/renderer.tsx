/**
 * How a `%%job` output shows in a notebook: the live widget while the kernel has its model, and
 * otherwise the job itself, never "Error displaying widget: model not found".
 *
 * The kernel's display bundle holds the widget view, the job's identity (`JOB_MIME`) and the
 * job's state as HTML. This renderer is preferred over ipywidgets' (a lower rank) and decides:
 *
 * - the widget view, when ipywidgets can show it (its model exists in this notebook's widget
 *   manager: the cell ran in this kernel, or the page reloaded while the kernel kept it);
 * - otherwise the job as the jobs server knows it now, followed as it runs on (a reopened
 *   notebook, a restarted kernel): status, timings, progress, then its outputs;
 * - otherwise (the server does not know the job, or cannot be reached) the state the output
 *   saved, as HTML.
 *
 * After a kernel restart, `%job attach ID` shows a new live widget in its own cell; an older
 * output of the same job keeps following the job through the server, so both agree.
 *
 * The widget is asked for through the notebook's own rendermime, so ipywidgets stays the judge of
 * whether a model exists; this module only looks at whether it rendered a view.
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import {
  IRenderMime,
  IRenderMimeRegistry,
  MimeModel
} from '@jupyterlab/rendermime';
import type * as nbformat from '@jupyterlab/nbformat';
import type { Event } from '@jupyterlab/services';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { Panel, Widget } from '@lumino/widgets';
import * as React from 'react';

import { JobsClient } from './client';
import { CommandIDs } from './commands';
import { ProgressBar, useClock } from './components';
import { parseJobEvents } from './events';
import {
  elapsedSeconds,
  formatDuration,
  progressFraction,
  progressLabel,
  statusText
} from './format';
import type { IJob } from './types';
import { ACTIVE_STATUSES } from './types';

/** The job a display shows, as the kernel's bundle names it (`jupyter_jobs/kernel/widget.py`). */
export const JOB_MIME = 'application/vnd.jupyter-jobs.job+json';
/** ipywidgets' view of a widget model. */
export const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';
/** Below ipywidgets' own rank (-10), so that this renderer gets to choose. */
export const RENDERER_RANK = -20;

/** Most ids in one `/status` request. */
const STATUS_BATCH = 200;

/** The identity of a job in a saved output. */
export interface IJobRef {
  id: number;
  name: string;
  created_at: number;
}

/** Read `JOB_MIME` data; null when it is not a job reference. */
export function parseJobRef(data: unknown): IJobRef | null {
  if (!data || typeof data !== 'object') {
    return null;
  }
  const { id, name, created_at } = data as { [key: string]: unknown };
  if (
    typeof id !== 'number' ||
    typeof name !== 'string' ||
    typeof created_at !== 'number'
  ) {
    return null;
  }
  return { id, name, created_at };
}

/**
 * Whether the server's job is the one an output names: ids restart with each database, so a
 * notebook opened against another server may find another job under the same id.
 */
export function sameJob(ref: IJobRef, job: IJob): boolean {
  return (
    job.id === ref.id &&
    job.name === ref.name &&
    Math.abs(job.created_at - ref.created_at) < 1e-3
  );
}

/** What the server said about a watched job last. */
export interface IJobNews {
  /** The job, or null when the server does not know it (deleted, another database). */
  job: IJob | null;
  /** Why the server could not be asked, or null. */
  error: string | null;
}

/**
 * Follows the jobs shown in notebook outputs, however many: one batched `/status` read for all of
 * them, again when an event names one, and every few seconds while one is active (events may not
 * arrive). Nothing is read while no output shows an active job.
 */
export class JobWatch implements IDisposable {
  constructor(options: JobWatch.IOptions) {
    this._client = options.client;
    this._events = options.events ?? null;
    this._delay = options.delay ?? 50;
    this._events?.stream.connect(this._onEmission, this);
    this._poll = new Poll({
      auto: false,
      factory: async () => this._readActive(),
      frequency: {
        interval: options.interval ?? 3000,
        backoff: true,
        max: 30000
      },
      name: 'jupyter-jobs:outputs',
      standby: 'when-hidden'
    });
    void this._poll.start();
  }

  /** Whether this watch is disposed. */
  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Call `listener` with every news of job `id` (at once if some is known); dispose to stop. */
  watch(id: number, listener: (news: IJobNews) => void): IDisposable {
    let listeners = this._listeners.get(id);
    if (!listeners) {
      listeners = new Set();
      this._listeners.set(id, listeners);
    }
    listeners.add(listener);
    const known = this._news.get(id);
    if (known) {
      listener(known);
    } else {
      this._schedule(id);
    }
    return new DisposableDelegate(() => {
      listeners!.delete(listener);
      if (!listeners!.size && this._listeners.get(id) === listeners) {
        this._listeners.delete(id);
        this._news.delete(id);
      }
    });
  }

  /** Read every job asked for since the last read, in batches. */
  async flush(): Promise<void> {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    const ids = [...this._pending];
    this._pending.clear();
    for (let start = 0; start < ids.length; start += STATUS_BATCH) {
      const batch = ids.slice(start, start + STATUS_BATCH);
      let answer;
      try {
        answer = await this._client.status(batch);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        for (const id of batch) {
          this._tell(id, {
            job: this._news.get(id)?.job ?? null,
            error: message
          });
        }
        continue;
      }
      for (const job of answer.jobs) {
        this._tell(job.id, { job, error: null });
      }
      for (const id of answer.missing) {
        this._tell(id, { job: null, error: null });
      }
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._events?.stream.disconnect(this._onEmission, this);
    this._poll.dispose();
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    this._listeners.clear();
  }

  private _onEmission(_: unknown, emission: Event.Emission): void {
    for (const event of parseJobEvents(emission) ?? []) {
      if (this._listeners.get(event.id)?.size) {
        this._schedule(event.id);
      }
    }
  }

  /** The poll: read the shown jobs that may still change (or could not be read). */
  private async _readActive(): Promise<void> {
    for (const id of this._listeners.keys()) {
      const news = this._news.get(id);
      if (
        news &&
        (news.error || (news.job && ACTIVE_STATUSES.has(news.job.status)))
      ) {
        this._pending.add(id);
      }
    }
    await this.flush();
  }

  private _schedule(id: number): void {
    this._pending.add(id);
    if (this._timer === null && !this.isDisposed) {
      this._timer = setTimeout(() => {
        this._timer = null;
        void this.flush();
      }, this._delay);
    }
  }

  private _tell(id: number, news: IJobNews): void {
    if (!this._listeners.has(id)) {
      return;
    }
    this._news.set(id, news);
    for (const listener of [...(this._listeners.get(id) ?? [])]) {
      listener(news);
    }
  }

  private _client: JobsClient;
  private _events: Event.IManager | null;
  private _delay: number;
  private _poll: Poll;
  private _listeners = new Map<number, Set<(news: IJobNews) => void>>();
  private _news = new Map<number, IJobNews>();
  private _pending = new Set<number>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
}

/** The JobWatch namespace. */
export namespace JobWatch {
  /** Options to build a watch. */
  export interface IOptions {
    client: JobsClient;
    /** The server's event manager: events about a shown job make it read at once. */
    events?: Event.IManager | null;
    /** How often active jobs are read again, in ms (default 3000). */
    interval?: number;
    /** How long requests are collected into one read, in ms (default 50). */
    delay?: number;
  }
}

/**
 * Resolves once ipywidgets has bound its renderer to this notebook's widget manager (it replaces
 * the placeholder it registered globally once the notebook's kernel is ready); false after
 * `timeout` ms or when ipywidgets is not installed. A renderer made from the placeholder would
 * wait for a manager that is never given to it (ipywidgets hands it only to top-level outputs).
 */
export function widgetsBound(
  rendermime: IRenderMimeRegistry,
  placeholder: IRenderMime.IRendererFactory | undefined,
  timeout = 60_000,
  interval = 200
): Promise<boolean> {
  const bound = () => {
    const factory = rendermime.getFactory(WIDGET_MIME);
    return factory !== undefined && factory !== placeholder;
  };
  if (bound() || placeholder === undefined) {
    return Promise.resolve(bound());
  }
  return new Promise(resolve => {
    const deadline = Date.now() + timeout;
    const check = () => {
      if (bound()) {
        resolve(true);
      } else if (Date.now() > deadline) {
        resolve(false);
      } else {
        setTimeout(check, interval);
      }
    };
    setTimeout(check, interval);
  });
}

/** What a job output renderer needs from the application. */
export interface IJobOutputContext {
  /** The notebook's rendermime: widget views, the saved HTML and the job's outputs. */
  rendermime: IRenderMimeRegistry;
  /** Resolves true once the notebook's widget renderer is bound to its widget manager. */
  widgetsReady: () => Promise<boolean>;
  watch: JobWatch;
  client: JobsClient;
  commands?: CommandRegistry | null;
  translator?: ITranslator | null;
}

/** The renderer factory to add to a notebook's rendermime. */
export function jobRendererFactory(
  context: IJobOutputContext
): IRenderMime.IRendererFactory {
  return {
    // Only reads: the saved HTML and the job's outputs render as trusted as the output is.
    safe: true,
    mimeTypes: [JOB_MIME],
    defaultRank: RENDERER_RANK,
    createRenderer: options => new JobOutputRenderer(options, context)
  };
}

/** One `%%job` output. */
export class JobOutputRenderer extends Panel implements IRenderMime.IRenderer {
  constructor(
    options: IRenderMime.IRendererOptions,
    context: IJobOutputContext
  ) {
    super();
    this._context = context;
    this._trans = (context.translator ?? nullTranslator).load('jupyter_jobs');
    this.addClass('jp-JobOutput');
    this._observer = new MutationObserver(() => this._show());
  }

  /** What is shown: the widget, the job as the server has it, or the saved state. */
  get shown(): 'widget' | 'live' | 'saved' | 'nothing' {
    return this._shown;
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this._model = model;
    const ref = parseJobRef(model.data[JOB_MIME]);
    if (!ref) {
      console.warn(
        'jupyter-jobs: an output names no job',
        model.data[JOB_MIME]
      );
    }
    if (ref?.id !== this._ref?.id) {
      this._following?.dispose();
      this._following = null;
      this._news = null;
      this._ref = ref;
      if (ref) {
        this._following = this._context.watch.watch(ref.id, news =>
          this._onNews(news)
        );
      }
    } else {
      this._ref = ref;
    }
    await this._renderSaved(model);
    await this._renderWidget(model);
    this._show();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._observer.disconnect();
    this._following?.dispose();
    this._outputs?.model.dispose();
    super.dispose();
  }

  /** Let ipywidgets render the view; it is shown only if it rendered one. */
  private async _renderWidget(model: IRenderMime.IMimeModel): Promise<void> {
    const view = model.data[WIDGET_MIME] as { model_id?: string } | undefined;
    const modelId = view?.model_id;
    if (!model.trusted || !modelId || modelId === this._widgetModelId) {
      return;
    }
    this._widgetModelId = modelId;
    this._widget?.dispose();
    this._widget = null;
    const waiting = this._context.widgetsReady();
    const ready = await Promise.race([
      waiting,
      new Promise<null>(resolve => setTimeout(() => resolve(null), 0))
    ]);
    if (ready === null) {
      // A reopened notebook whose kernel is starting: show the job meanwhile, and the widget
      // if ipywidgets finds its model once the kernel is there.
      void waiting.then(async bound => {
        if (bound) {
          await this._attachWidget(model, modelId);
        }
      });
    } else if (ready) {
      // Nothing is shown while the widget comes (at once, in the session that ran the cell).
      this._widgetPending = true;
      await this._attachWidget(model, modelId);
    }
  }

  private async _attachWidget(
    model: IRenderMime.IMimeModel,
    modelId: string
  ): Promise<void> {
    if (this.isDisposed || this._widgetModelId !== modelId) {
      return;
    }
    try {
      const widget = this._createWidget();
      if (widget) {
        await widget.renderModel(model);
      }
    } catch (error) {
      console.error('jupyter-jobs: the job widget did not render', error);
    } finally {
      this._widgetPending = false;
      this._show();
    }
  }

  /** An ipywidgets renderer, hidden until it holds a view (a model can come back later). */
  private _createWidget(): IRenderMime.IRenderer | null {
    let widget: IRenderMime.IRenderer;
    try {
      widget = this._context.rendermime.createRenderer(WIDGET_MIME);
    } catch {
      return null; // ipywidgets is not installed
    }
    widget.addClass('jp-JobOutput-widget');
    widget.hide();
    this._widget = widget;
    this.insertWidget(0, widget);
    this._observer.observe(widget.node, { childList: true });
    return widget;
  }

  /** The state the output saved, as HTML (rendered as trusted as the output is). */
  private async _renderSaved(model: IRenderMime.IMimeModel): Promise<void> {
    const html = model.data['text/html'];
    if (typeof html !== 'string' || html === this._savedHtml) {
      return;
    }
    this._savedHtml = html;
    if (!this._saved) {
      this._saved = new Panel();
      this._saved.addClass('jp-JobOutput-saved');
      this._savedNote = new Widget();
      this._savedNote.addClass('jp-JobOutput-note');
      this._saved.addWidget(this._savedNote);
      this._saved.hide();
      this.addWidget(this._saved);
    }
    const renderer = this._context.rendermime.createRenderer('text/html');
    this._saved.widgets[1]?.dispose();
    this._saved.insertWidget(1, renderer);
    await renderer.renderModel(
      new MimeModel({ data: { 'text/html': html }, trusted: model.trusted })
    );
  }

  private _onNews(news: IJobNews): void {
    this._news = news;
    const job =
      news.job && this._ref && sameJob(this._ref, news.job) ? news.job : null;
    if (job) {
      this._renderLive(job);
    }
    this._show();
  }

  /** The job as the server has it: the header now, its outputs once it finished. */
  private _renderLive(job: IJob): void {
    if (!this._live) {
      this._live = new Panel();
      this._live.addClass('jp-JobOutput-live');
      this._header = new LiveHeader(
        this._trans,
        this._context.commands ?? null
      );
      this._live.addWidget(this._header);
      this._outputs = new OutputArea({
        model: new OutputAreaModel({ trusted: !!this._model?.trusted }),
        rendermime: this._context.rendermime
      });
      this._outputs.addClass('jp-JobOutput-outputs');
      this._live.addWidget(this._outputs);
      this._live.hide();
      this.addWidget(this._live);
    }
    this._header!.setJob(job);
    const ending = ACTIVE_STATUSES.has(job.status)
      ? null
      : `${job.attempt}:${job.finished_at}`;
    if (ending !== this._outputsOf) {
      this._outputsOf = ending;
      void this._readOutputs(job, ending);
    }
  }

  /** The outputs of a finished attempt, with its error as a traceback (as the widget shows). */
  private async _readOutputs(job: IJob, ending: string | null): Promise<void> {
    let outputs: nbformat.IOutput[] = [];
    if (ending !== null && job.has_outputs) {
      try {
        outputs = (await this._context.client.outputs(job.id)).outputs;
      } catch (error) {
        console.error(
          `jupyter-jobs: cannot read the outputs of job ${job.id}`,
          error
        );
        this._outputsOf = null; // read again with the next news
      }
    }
    if (this._outputsOf !== ending || !this._outputs) {
      return;
    }
    if (
      ending !== null &&
      job.error &&
      !outputs.some(o => o.output_type === 'error')
    ) {
      outputs = [
        ...outputs,
        {
          output_type: 'error',
          ename: job.error.type,
          evalue: job.error.message,
          traceback: job.error.traceback ? job.error.traceback.split('\n') : []
        }
      ];
    }
    this._outputs.model.clear();
    this._outputs.model.fromJSON(outputs);
  }

  /** Show the best of what there is. */
  private _show(): void {
    if (this.isDisposed) {
      return;
    }
    // ipywidgets adds the view as an element; its messages are text, and a closed view leaves.
    const widget = this._widget;
    const job = this._news?.job;
    let shown: JobOutputRenderer['shown'];
    if (widget && widget.node.childElementCount > 0) {
      shown = 'widget';
    } else if (this._widgetPending) {
      shown = 'nothing';
    } else if (job && this._ref && sameJob(this._ref, job)) {
      shown = 'live';
    } else if (this._saved) {
      shown = 'saved';
    } else {
      shown = 'nothing';
    }
    this._shown = shown;
    widget?.setHidden(shown !== 'widget');
    this._live?.setHidden(shown !== 'live');
    this._saved?.setHidden(shown !== 'saved');
    if (this._savedNote) {
      this._savedNote.node.textContent = this._savedNoteText();
    }
  }

  private _savedNoteText(): string {
    const news = this._news;
    if (!news || !this._ref || (news.job && sameJob(this._ref, news.job))) {
      return '';
    }
    if (news.error) {
      return this._trans.__(
        'Saved state of job %1: cannot reach the jobs server (%2).',
        this._ref.id,
        news.error
      );
    }
    return this._trans.__(
      'Saved state of job %1: the jobs server does not know this job any more.',
      this._ref.id
    );
  }

  private _context: IJobOutputContext;
  private _trans: TranslationBundle;
  private _observer: MutationObserver;
  private _model: IRenderMime.IMimeModel | null = null;
  private _ref: IJobRef | null = null;
  private _following: IDisposable | null = null;
  private _news: IJobNews | null = null;
  private _widget: IRenderMime.IRenderer | null = null;
  private _widgetModelId: string | null = null;
  private _widgetPending = false;
  private _saved: Panel | null = null;
  private _savedNote: Widget | null = null;
  private _savedHtml: string | null = null;
  private _live: Panel | null = null;
  private _header: LiveHeader | null = null;
  private _outputs: OutputArea | null = null;
  private _outputsOf: string | null = null;
  private _shown: JobOutputRenderer['shown'] = 'nothing';
}

/** The header of a job shown from the server: name, status, timing, progress. */
class LiveHeader extends ReactWidget {
  constructor(trans: TranslationBundle, commands: CommandRegistry | null) {
    super();
    this._trans = trans;
    this._commands = commands;
    this.addClass('jp-JobOutput-header');
  }

  setJob(job: IJob): void {
    this._job = job;
    this.update();
  }

  protected render(): JSX.Element | null {
    return this._job ? (
      <JobLine job={this._job} trans={this._trans} commands={this._commands} />
    ) : null;
  }

  private _trans: TranslationBundle;
  private _commands: CommandRegistry | null;
  private _job: IJob | null = null;
}

function JobLine(props: {
  job: IJob;
  trans: TranslationBundle;
  commands: CommandRegistry | null;
}): JSX.Element {
  const { job, trans, commands } = props;
  const active = ACTIVE_STATUSES.has(job.status);
  const now = useClock(active);
  const spent = formatDuration(elapsedSeconds(job, now));
  const timing =
    job.started_at === null
      ? trans.__('waiting for %1', spent)
      : active
        ? trans.__('%1 elapsed', spent)
        : trans.__('took %1', spent);
  const canShow = !!commands?.hasCommand(CommandIDs.show);
  return (
    <>
      <div className="jp-JobOutput-line">
        <span className="jp-JobOutput-name">{job.name}</span>
        <span className="jp-JobsPanel-status" data-status={job.status}>
          {statusText(job, trans)}
        </span>
        <span className="jp-JobOutput-timing">{`#${job.id} · ${timing}`}</span>
        {canShow && (
          <button
            type="button"
            className="jp-JobsPanel-link"
            onClick={() =>
              void commands!.execute(CommandIDs.show, { id: job.id })
            }
          >
            {trans.__('Details')}
          </button>
        )}
      </div>
      {job.progress && (
        <div className="jp-JobOutput-progress">
          <ProgressBar
            job={job}
            fraction={progressFraction(job.progress)}
            trans={trans}
          />
          <span>{progressLabel(job.progress)}</span>
        </div>
      )}
      <div className="jp-JobOutput-note">
        {trans.__(
          'Followed through the jobs server: this kernel has no widget for job %1 (%2 shows one).',
          job.id,
          `%job attach ${job.id}`
        )}
      </div>
    </>
  );
}
