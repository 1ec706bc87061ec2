/**
 * The detail view of one job: its facts (timings, attempts, priority, dependencies), the error
 * with its traceback, the display outputs it captured (rendered by JupyterLab's rendermime, like
 * a cell's outputs) and its log, tailed live while the job runs.
 *
 * The view polls the job and its log once a second while the job is active and stops when it has
 * read everything of a finished job; an event about the job (a retry, a delete) wakes it again.
 * A log whose job had other threads or child processes write has labelled streams: a selector
 * shows one of them alone, or all of them ("All", each labelled line tagged with its stream).
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Poll } from '@lumino/polling';
import { Panel, Widget } from '@lumino/widgets';
import * as React from 'react';

import { CommandIDs } from './commands';
import { isNotebookJob } from './nbtypes';
import { NotebookCommandIDs } from './notebookjob';
import { TypedFacts, TypedSummary } from './summary';
import {
  elapsedSeconds,
  formatDuration,
  formatTime,
  notebookPath,
  progressFraction,
  progressLabel,
  stripAnsi,
  statusText,
  userText
} from './format';
import { JobsModel } from './model';
import { ActionButtons, ProgressBar, useClock } from './components';
import type { IJob } from './types';
import { ACTIVE_STATUSES } from './types';

/** Most log characters kept on screen; older text is dropped with a marker. */
export const MAX_LOG_CHARS = 1_000_000;
/** Bytes asked for per log request. */
const LOG_CHUNK = 256 * 1024;
/** The job's own output (`jupyter_jobs/streams.py`'s MAIN): untagged in the "All" view. */
export const MAIN_STREAM = 'main';

/** The content of a job's detail tab. */
export class JobDetail extends Panel {
  constructor(options: JobDetail.IOptions) {
    super();
    this.jobId = options.id;
    this._model = options.model;
    this.addClass('jp-JobDetail');
    const trans = (options.translator ?? nullTranslator).load('jupyter_jobs');
    this._trans = trans;
    this.title.label = trans.__('Job %1', options.id);
    this.title.caption = this.title.label;

    this._summary = new JobSummaryWidget({
      model: options.model,
      commands: options.commands,
      serverRoot: options.serverRoot ?? '',
      trans
    });
    this.addWidget(this._summary);

    this._outputsSection = new Panel();
    this._outputsSection.addClass('jp-JobDetail-section');
    this._outputsSection.addWidget(heading(trans.__('Outputs')));
    if (options.rendermime) {
      this._outputs = new OutputArea({
        model: new OutputAreaModel({ trusted: false }),
        rendermime: options.rendermime
      });
      this._outputs.addClass('jp-JobDetail-outputs');
      this._outputsSection.addWidget(this._outputs);
    }
    this._outputsSection.hide();
    this.addWidget(this._outputsSection);

    this._log = new LogView(trans);
    this._log.streamChanged = () => this._onStreamChanged();
    this.addWidget(this._log);

    this._model.jobTouched.connect(this._onTouched, this);
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: { interval: 1000, backoff: true, max: 30000 },
      name: `jupyter-jobs:detail-${options.id}`,
      standby: 'when-hidden'
    });
    void this._poll.start();
  }

  /** The job shown. */
  readonly jobId: number;

  /** The job as last read, or null before the first read. */
  get job(): IJob | null {
    return this._job;
  }

  /** Read the job again now. */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._model.jobTouched.disconnect(this._onTouched, this);
    this._poll.dispose();
    this._outputs?.model.dispose();
    super.dispose();
  }

  /** Another stream was chosen: read it from its start. */
  private _onStreamChanged(): void {
    this._logOffset = 0;
    this._log.clear();
    this._setActive(true);
    void this._poll.refresh();
  }

  private _onTouched(_: JobsModel, id: number): void {
    if (id === this.jobId) {
      this._setActive(true);
      void this._poll.refresh();
    }
  }

  /** One poll: the record, new log text, and the outputs once the job has them. */
  private async _tick(): Promise<void> {
    const client = this._model.client;
    let job: IJob;
    try {
      job = await client.get(this.jobId);
    } catch (error) {
      if (
        error instanceof ServerConnection.ResponseError &&
        error.response.status === 404
      ) {
        this._summary.setState({ job: this._job, gone: true, error: null });
        this._setActive(false);
        return;
      }
      this._summary.setState({
        job: this._job,
        gone: false,
        error: (error as Error).message
      });
      throw error;
    }
    if (this._job !== null && job.attempt !== this._job.attempt) {
      // A new attempt: its outputs replace the old ones.
      this._outputsRead = false;
      this._outputsSection.hide();
    }
    if (this._log.stream === null && job.log_size < this._logOffset) {
      // The log was rewritten (a retry that starts it afresh): read it from the start.
      this._logOffset = 0;
      this._log.clear();
    }
    this._job = job;
    this.title.label = this._trans.__('Job %1: %2', job.id, job.name);
    this.title.caption = `${this.title.label} (${statusText(job, this._trans)})`;
    this._summary.setState({ job, gone: false, error: null });
    const logDone = await this._readLog(job);
    await this._readOutputs(job);
    const finished = !ACTIVE_STATUSES.has(job.status);
    this._setActive(!(finished && logDone && this._outputsRead));
  }

  /** Append the log text written since the last read; true when all of it is read. */
  private async _readLog(job: IJob): Promise<boolean> {
    const stream = this._log.stream;
    const size =
      stream === null ? job.log_size : (this._log.sizeOf(stream) ?? 0);
    if (this._logOffset === 0 && size > MAX_LOG_CHARS) {
      // Start near the end of a long log: the tail is what a user looks for.
      this._logOffset = size - MAX_LOG_CHARS;
      this._log.markCut();
    }
    for (let reads = 0; reads < 8; reads++) {
      const chunk = await this._model.client.logs(
        this.jobId,
        this._logOffset,
        LOG_CHUNK,
        stream
      );
      if (stream !== this._log.stream) {
        return false; // another stream was chosen meanwhile: this read is of no use
      }
      this._log.setStreams(chunk.streams);
      if (stream === null) {
        this._log.appendParts(chunk.parts);
      } else {
        this._log.append(chunk.data);
      }
      const advanced = chunk.next_offset > this._logOffset;
      this._logOffset = chunk.next_offset;
      if (!advanced || chunk.next_offset >= chunk.size) {
        return chunk.next_offset >= chunk.size;
      }
    }
    return false;
  }

  /**
   * Show the captured display outputs once the job finished with some. Streams and errors are
   * left out: the log and the error section already show them, as text.
   */
  private async _readOutputs(job: IJob): Promise<void> {
    if (this._outputsRead || ACTIVE_STATUSES.has(job.status)) {
      return;
    }
    if (!job.has_outputs || !this._outputs) {
      this._outputsRead = true;
      return;
    }
    const { outputs } = await this._model.client.outputs(this.jobId);
    const shown = outputs.filter(
      output =>
        output.output_type !== 'stream' && output.output_type !== 'error'
    );
    this._outputs.model.clear();
    this._outputs.model.fromJSON(shown);
    this._outputsSection.setHidden(shown.length === 0);
    this._outputsRead = true;
  }

  private _setActive(active: boolean): void {
    this._poll.frequency = {
      interval: active ? 1000 : Poll.NEVER,
      backoff: true,
      max: active ? 30000 : Poll.NEVER
    };
  }

  private _model: JobsModel;
  private _trans: TranslationBundle;
  private _summary: JobSummaryWidget;
  private _outputsSection: Panel;
  private _outputs: OutputArea | null = null;
  private _log: LogView;
  private _poll: Poll;
  private _job: IJob | null = null;
  private _logOffset = 0;
  private _outputsRead = false;
}

/** The JobDetail namespace. */
export namespace JobDetail {
  /** Options to build a detail view. */
  export interface IOptions {
    id: number;
    model: JobsModel;
    commands: CommandRegistry;
    /** Renders the captured outputs; without it they are not shown. */
    rendermime?: IRenderMimeRegistry | null;
    serverRoot?: string;
    translator?: ITranslator;
  }
}

function heading(text: string): Widget {
  const node = document.createElement('h3');
  node.className = 'jp-JobDetail-heading';
  node.textContent = text;
  return new Widget({ node });
}

/**
 * The log, appended as text nodes: a chunk costs one DOM insertion however long the log is, and
 * nothing in it is ever parsed as HTML. Labelled streams (other threads, child processes) are
 * offered in a selector once the log has some; in the "All" view each of their lines starts
 * with a tag naming its stream.
 */
export class LogView extends Widget {
  constructor(trans: TranslationBundle = nullTranslator.load('jupyter_jobs')) {
    super();
    this.addClass('jp-JobDetail-section');
    this.addClass('jp-JobDetail-logSection');
    const header = document.createElement('div');
    header.className = 'jp-JobDetail-logHeader';
    const title = document.createElement('h3');
    title.className = 'jp-JobDetail-heading';
    title.textContent = trans.__('Log');
    this._select = document.createElement('select');
    this._select.className = 'jp-JobDetail-streamSelect';
    this._select.setAttribute('aria-label', trans.__('Log stream'));
    this._select.title = trans.__(
      'Show the output of one thread or child process of the job'
    );
    this._select.append(new Option(trans.__('All streams'), ''));
    this._select.hidden = true;
    this._select.addEventListener('change', () => {
      this.streamChanged?.();
    });
    header.append(title, this._select);
    this._pre = document.createElement('pre');
    this._pre.className = 'jp-JobDetail-log';
    this._pre.setAttribute('aria-label', trans.__('Job log'));
    this._empty = document.createElement('div');
    this._empty.className = 'jp-JobDetail-muted';
    this._empty.textContent = trans.__('No log output yet.');
    this._cutText = trans.__('… earlier log not shown …');
    this.node.append(header, this._empty, this._pre);
  }

  /** Called when the user chooses another stream (the text is theirs to read again). */
  streamChanged: (() => void) | null = null;

  /** The stream shown, or null for all of them. */
  get stream(): string | null {
    return this._select.value || null;
  }

  /** The text shown. */
  get text(): string {
    return this._pre.textContent ?? '';
  }

  /** The names of the log's streams, as the selector offers them (main first). */
  get streams(): string[] {
    return [...this._sizes.keys()];
  }

  /** A stream's size in bytes, as last read. */
  sizeOf(stream: string): number | undefined {
    return this._sizes.get(stream);
  }

  /** The log's streams: the selector shows once there is more than the main one. */
  setStreams(streams: readonly { name: string; size: number }[]): void {
    for (const { name, size } of streams) {
      if (!this._sizes.has(name)) {
        this._select.append(new Option(name, name));
      }
      this._sizes.set(name, size);
    }
    this._select.hidden = this._sizes.size < 2;
  }

  /** Add the parts of a chunk of the whole log, tagging the lines of labelled streams. */
  appendParts(parts: readonly { stream: string; data: string }[]): void {
    for (const { stream, data } of parts) {
      if (stream === MAIN_STREAM) {
        this.append(data);
        continue;
      }
      const part = document.createElement('span');
      part.className = 'jp-JobDetail-logPart';
      part.dataset.stream = stream;
      for (const line of stripAnsi(data).split(/(?<=\n)/)) {
        if (this._lineStart.get(stream) ?? true) {
          const tag = document.createElement('span');
          tag.className = 'jp-JobDetail-logTag';
          tag.textContent = `${stream} │ `;
          part.appendChild(tag);
        }
        part.appendChild(document.createTextNode(line));
        this._lineStart.set(stream, line.endsWith('\n'));
      }
      this._insert(part, data.length);
    }
  }

  /** Add text at the end, keeping the view pinned to the bottom if it was there. */
  append(text: string): void {
    if (!text) {
      return;
    }
    this._insert(document.createTextNode(stripAnsi(text)), text.length);
  }

  private _insert(node: Node, length: number): void {
    const pinned =
      this._pre.scrollHeight - this._pre.scrollTop - this._pre.clientHeight < 4;
    this._pre.appendChild(node);
    this._length += length;
    this._empty.hidden = true;
    while (this._length > MAX_LOG_CHARS && this._pre.childNodes.length > 1) {
      const oldest = this._pre.childNodes[this._cut ? 1 : 0];
      this._length -= oldest.textContent?.length ?? 0;
      oldest.remove();
      this.markCut();
    }
    if (pinned) {
      this._pre.scrollTop = this._pre.scrollHeight;
    }
  }

  /** Say that the beginning of the log is not shown. */
  markCut(): void {
    if (this._cut) {
      return;
    }
    this._cut = document.createElement('span');
    this._cut.className = 'jp-JobDetail-muted';
    this._cut.textContent = `${this._cutText}\n`;
    this._pre.prepend(this._cut);
  }

  /** Forget the text (a retry starts a new log; another stream is read from its start). */
  clear(): void {
    this._pre.textContent = '';
    this._cut = null;
    this._length = 0;
    this._lineStart.clear();
    this._empty.hidden = false;
  }

  private _pre: HTMLPreElement;
  private _select: HTMLSelectElement;
  private _empty: HTMLDivElement;
  private _cut: HTMLSpanElement | null = null;
  private _cutText: string;
  private _length = 0;
  private _sizes = new Map<string, number>();
  /** Whether each labelled stream's next text begins a line (so it gets a tag). */
  private _lineStart = new Map<string, boolean>();
}

interface ISummaryState {
  job: IJob | null;
  gone: boolean;
  error: string | null;
}

interface ISummaryContext {
  model: JobsModel;
  commands: CommandRegistry;
  serverRoot: string;
  trans: TranslationBundle;
}

/** The React part: header, actions, facts, error. */
class JobSummaryWidget extends ReactWidget {
  constructor(context: ISummaryContext) {
    super();
    this._context = context;
    this.addClass('jp-JobDetail-summary');
  }

  setState(state: ISummaryState): void {
    this._state = state;
    this.update();
  }

  protected render(): JSX.Element {
    return <JobSummary {...this._state} {...this._context} />;
  }

  private _context: ISummaryContext;
  private _state: ISummaryState = { job: null, gone: false, error: null };
}

function JobSummary(props: ISummaryState & ISummaryContext): JSX.Element {
  const { job, model, commands, trans } = props;
  const now = useClock(job !== null && ACTIVE_STATUSES.has(job.status));
  if (!job) {
    return (
      <div className="jp-JobDetail-muted">
        {props.gone
          ? trans.__('This job does not exist (it was deleted).')
          : props.error
            ? trans.__('Cannot read the job: %1', props.error)
            : trans.__('Loading…')}
      </div>
    );
  }
  const path = notebookPath(job.owner, props.serverRoot);
  const open = (command: string, args: Record<string, number | string>) => () =>
    void commands.execute(command, args);
  const active = ACTIVE_STATUSES.has(job.status);
  const duration =
    job.started_at === null
      ? trans.__('Waiting for')
      : active
        ? trans.__('Running for')
        : trans.__('Ran for');
  return (
    <div>
      <header className="jp-JobDetail-header">
        <h2 className="jp-JobDetail-name">{job.name}</h2>
        <span
          className="jp-JobsPanel-status jp-JobDetail-status"
          data-status={job.status}
        >
          {statusText(job, trans)}
        </span>
      </header>
      {props.gone && (
        <div className="jp-JobsPanel-error" role="alert">
          {trans.__('This job was deleted.')}
        </div>
      )}
      {props.error && (
        <div className="jp-JobsPanel-error" role="alert">
          {trans.__('Cannot read the job: %1', props.error)}
        </div>
      )}
      <div className="jp-JobDetail-toolbar">
        <ActionButtons
          job={job}
          actions={model.actionsFor(job)}
          commands={commands}
          trans={trans}
          withLabels
        />
        {path && (
          <button
            type="button"
            className="jp-mod-styled jp-JobDetail-button"
            onClick={open(CommandIDs.openNotebook, { path })}
          >
            {trans.__('Open %1', path)}
          </button>
        )}
        {isNotebookJob(job) && job.started_at !== null && (
          <>
            <button
              type="button"
              className="jp-mod-styled jp-JobDetail-button jp-JobDetail-openResult"
              onClick={open(NotebookCommandIDs.openResult, { id: job.id })}
            >
              {trans.__('Open result')}
            </button>
            <button
              type="button"
              className="jp-mod-styled jp-JobDetail-button jp-JobDetail-saveResult"
              onClick={open(NotebookCommandIDs.saveResult, { id: job.id })}
            >
              {trans.__('Save a copy')}
            </button>
          </>
        )}
      </div>
      {(job.progress || job.status === 'running') && (
        <div className="jp-JobDetail-progress">
          <ProgressBar
            job={job}
            fraction={progressFraction(job.progress)}
            trans={trans}
          />
          <span>{progressLabel(job.progress)}</span>
        </div>
      )}
      <dl className="jp-JobDetail-facts">
        <Fact label={trans.__('Job')}>{`${job.id} (${job.kind})`}</Fact>
        <TypedFacts job={job} trans={trans} />
        <Fact label={trans.__('Owner')}>{job.owner || '—'}</Fact>
        <Fact label={trans.__('User')}>
          <span className="jp-JobDetail-user">{userText(job) ?? '—'}</span>
        </Fact>
        <Fact label={trans.__('Priority')}>{String(job.priority)}</Fact>
        <Fact label={trans.__('Attempt')}>
          {trans.__('%1 of %2', job.attempt, job.retries + 1)}
          {job.worker_losses
            ? ` · ${trans._n('worker lost once', 'worker lost %1 times', job.worker_losses)}`
            : ''}
        </Fact>
        <Fact label={trans.__('Depends on')}>
          {job.after.length
            ? job.after.map(id => (
                <button
                  key={id}
                  type="button"
                  className="jp-JobsPanel-link"
                  onClick={open(CommandIDs.show, { id })}
                >
                  {`#${id}`}
                </button>
              ))
            : '—'}
        </Fact>
        <Fact label={trans.__('Created')}>{formatTime(job.created_at)}</Fact>
        <Fact label={trans.__('Queued')}>{formatTime(job.queued_at)}</Fact>
        <Fact label={trans.__('Started')}>{formatTime(job.started_at)}</Fact>
        <Fact label={trans.__('Finished')}>{formatTime(job.finished_at)}</Fact>
        <Fact label={duration}>{formatDuration(elapsedSeconds(job, now))}</Fact>
        {job.timeout !== null && (
          <Fact label={trans.__('Timeout')}>{formatDuration(job.timeout)}</Fact>
        )}
        {job.run_at !== null && (
          <Fact label={trans.__('Run at')}>{formatTime(job.run_at)}</Fact>
        )}
        {job.expires_at !== null && (
          <Fact label={trans.__('Expires')}>{formatTime(job.expires_at)}</Fact>
        )}
      </dl>
      <TypedSummary job={job} trans={trans} />
      {job.error && (
        <section
          className="jp-JobDetail-section"
          aria-label={trans.__('Error')}
        >
          <h3 className="jp-JobDetail-heading">{trans.__('Error')}</h3>
          <div className="jp-JobDetail-errorMessage">
            {`${job.error.type}: ${job.error.message}`}
          </div>
          {job.error.traceback && (
            <pre className="jp-JobDetail-traceback">
              {stripAnsi(job.error.traceback)}
            </pre>
          )}
        </section>
      )}
    </div>
  );
}

function Fact(props: {
  label: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <>
      <dt>{props.label}</dt>
      <dd>{props.children}</dd>
    </>
  );
}
