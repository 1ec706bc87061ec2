/**
 * Test helpers: job records, and an in-memory stand-in for the jobs API that follows the
 * server's rules as openapi.yaml states them (newest first, status filter, search in name or
 * owner, id cursors, global counts, the actions each status allows).
 */

import type * as nbformat from '@jupyterlab/nbformat';
import type { ReactWidget } from '@jupyterlab/apputils';
import type { Event } from '@jupyterlab/services';
import { MessageLoop } from '@lumino/messaging';
import { Stream } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import { act } from 'react';

import { IListQuery, IStatsQuery, IWhoseQuery, JobsClient } from '../client';
import { provisionalJob } from '../model';
import type {
  INotebookAwareJob,
  INotebookJobRequest,
  IPreviewQuery,
  ISchedule,
  ISchedulePreview,
  IScheduleSpec
} from '../nbtypes';
import type {
  Action,
  IJob,
  IJobEvent,
  IJobPage,
  IJobType,
  IMe,
  IOutputs,
  IStats,
  IStatusResponse,
  ITypedSubmit,
  IWorker,
  JobStatus,
  StatusCounts
} from '../types';

/**
 * The actions the server offers per status (`lifecycle.allowed_actions`, for a job neither
 * claimed, held nor asked to cancel): the fake's jobs carry them as the server's records do; a
 * held pending job also offers `release` (`HELD_ACTIONS`).
 */
export const ACTIONS_BY_STATUS: Record<JobStatus, Action[]> = {
  pending: ['cancel', 'delete'],
  queued: ['cancel', 'delete'],
  running: ['cancel'],
  succeeded: ['delete'],
  failed: ['retry', 'delete'],
  cancelled: ['retry', 'delete']
};

/** What a pending job submitted with `hold` offers until it is released. */
export const HELD_ACTIONS: Action[] = ['cancel', 'release', 'delete'];

/** The server's search (`q`): the text in the name or the owner, ASCII case folded. */
export function searchMatches(
  job: Pick<IJob, 'name' | 'owner'>,
  q: string
): boolean {
  const fold = (text: string) => text.replace(/[A-Z]/g, c => c.toLowerCase());
  return (
    !q || fold(job.name).includes(fold(q)) || fold(job.owner).includes(fold(q))
  );
}

/** The user the fake server takes the test for: jobs are theirs unless a test says not. */
export const ME: IMe = {
  username: 'ana',
  display_name: 'Ana',
  can_read_all: true,
  can_write_all: true
};

/** A full job record with defaults. */
export function makeJob(id: number, fields: Partial<IJob> = {}): IJob {
  const status = fields.status ?? 'queued';
  const base = provisionalJob({
    action: 'created',
    id,
    name: `job-${id}`,
    owner: 'analysis.ipynb',
    user: ME.username,
    status: 'queued',
    previous: null,
    reason: null,
    attempt: 0,
    progress: null,
    actions: ACTIONS_BY_STATUS[status],
    schedule_id: null,
    type: null,
    summary: null
  });
  return {
    ...base,
    created_at: 1_700_000_000 + id,
    user_display_name: ME.display_name,
    ...fields
  };
}

/** A job type as `GET /jobs/api/types` lists it, with defaults (an installed type). */
export function makeJobType(
  name: string,
  fields: Partial<IJobType> = {}
): IJobType {
  return {
    name,
    description: '',
    schema: { type: 'object' },
    source: 'installed',
    entry_point: `m:${name}`,
    summarize: false,
    owner: '',
    interpreter: null,
    cwd: null,
    created_at: null,
    error: null,
    ...fields
  };
}

/** The test package's `train` type (tests/typed_package.py), a schema of each kind. */
export const TRAIN_TYPE = makeJobType('train', {
  description: 'Train a model.',
  schema: {
    type: 'object',
    properties: {
      epochs: { type: 'integer', minimum: 1, default: 3 },
      model: { type: 'string', enum: ['linear', 'tree'], default: 'linear' }
    },
    required: ['epochs'],
    additionalProperties: false
  },
  entry_point: 'mltypes:train',
  summarize: true
});

/** A type with a parameter of each JSON type, and the time a schedule's runs receive. */
export const REPORT_TYPE: IJobType = makeJobType('report', {
  description: 'A report of one region.',
  schema: {
    type: 'object',
    properties: {
      // eslint-disable-next-line jupyter/no-untranslated-string -- the schema's own words
      region: { type: 'string', title: 'Region' },
      days: { type: 'integer', minimum: 1, default: 7 },
      rate: { type: 'number', default: 0.5 },
      draft: { type: 'boolean', default: false },
      scheduled_time: { type: 'string' }
    },
    required: ['region', 'days', 'scheduled_time'],
    additionalProperties: false
  }
});

/** A job event with defaults. */
export function makeEvent(
  id: number,
  fields: Partial<IJobEvent> = {}
): IJobEvent {
  return {
    action: 'transition',
    id,
    name: `job-${id}`,
    owner: 'analysis.ipynb',
    user: ME.username,
    status: 'running',
    previous: 'queued',
    reason: null,
    attempt: 1,
    progress: null,
    actions: ACTIONS_BY_STATUS[fields.status ?? 'running'],
    schedule_id: null,
    type: null,
    summary: null,
    ...fields
  };
}

/** A deferred promise, to hold a fake response until a test releases it. */
export class Deferred<T> {
  promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (reason: unknown) => void;
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

/** An in-memory jobs API with the subset of JobsClient the model uses. */
export class FakeApi {
  jobs = new Map<number, IJob>();
  /** The captured outputs of jobs, by id. */
  outputsOf = new Map<number, nbformat.IOutput[]>();
  /** Every call, as "method args", for assertions on what the model asked. */
  calls: string[] = [];
  /** When set, the next calls of this method fail with this error. */
  failing: { [method: string]: Error | undefined } = {};
  /** When set, `status()` waits for this before answering. */
  statusGate: Deferred<void> | null = null;
  /** When set, `list()` waits for this before answering. */
  listGate: Deferred<void> | null = null;
  /** Who `me()` says the user is. */
  me_: IMe = { ...ME };
  /** The `mine` of each `clearFinished()`, in order. */
  cleared: boolean[] = [];

  add(...jobs: IJob[]): void {
    for (const job of jobs) {
      this.jobs.set(job.id, job);
    }
  }

  /** Change a job; a new status brings that status's actions unless `fields` says otherwise. */
  set(id: number, fields: Partial<IJob>): IJob {
    const old = this.jobs.get(id)!;
    const status = fields.status ?? old.status;
    const actions =
      status === old.status ? old.actions : ACTIONS_BY_STATUS[status];
    const job = { ...old, actions, ...fields };
    this.jobs.set(id, job);
    return job;
  }

  /**
   * Jobs per status, among those the search `q` matches (as the server counts), of the user
   * `user` names and of the job type `type` names when given.
   */
  counts(q = '', user?: string, type?: string): StatusCounts {
    const counts: StatusCounts = {};
    for (const job of this.jobs.values()) {
      if (
        !searchMatches(job, q) ||
        (user !== undefined && job.user !== user) ||
        (type && job.type !== type)
      ) {
        continue;
      }
      counts[job.status] = (counts[job.status] ?? 0) + 1;
    }
    return counts;
  }

  async list(query: IListQuery = {}): Promise<IJobPage> {
    this.calls.push(`list ${JSON.stringify(query)}`);
    const gate = this.listGate;
    if (gate) {
      await gate.promise;
    }
    this._maybeFail('list');
    const statuses = query.status ?? [];
    const q = query.q ?? '';
    const limit = query.limit ?? 50;
    const before = query.cursor ? Number(query.cursor) : Infinity;
    const user = this._whose(query);
    const matching = [...this.jobs.values()]
      .filter(job => user === undefined || job.user === user)
      .filter(job => job.id < before)
      .filter(job => !statuses.length || statuses.includes(job.status))
      .filter(job => searchMatches(job, q))
      .filter(job => !query.type || job.type === query.type)
      .filter(
        job =>
          query.schedule === undefined ||
          (job as INotebookAwareJob).schedule_id === query.schedule
      )
      .sort((a, b) => b.id - a.id);
    const jobs = matching.slice(0, limit);
    const more = matching.length > limit;
    return {
      jobs: jobs.map(job => ({ ...job })),
      next_cursor: more ? String(jobs[jobs.length - 1].id) : null,
      counts: this.counts(q, user, query.type)
    };
  }

  /** The job type names `types()` lists (none unless a test sets some)... */
  typeNames: string[] = [];
  /** ...then these types. */
  jobTypes: IJobType[] = [];

  async types(): Promise<IJobType[]> {
    this.calls.push('types');
    this._maybeFail('types');
    return [...this.typeNames.map(name => makeJobType(name)), ...this.jobTypes];
  }

  async stats(query: IStatsQuery = {}): Promise<IStats> {
    const scope = [
      query.mine ? ' mine' : '',
      query.type ? ` ${query.type}` : ''
    ];
    this.calls.push(`stats${scope.join('')}`);
    this._maybeFail('stats');
    const counts = this.counts('', this._whose(query), query.type);
    return {
      counts,
      running: counts.running ?? 0,
      queued: counts.queued ?? 0,
      pending: counts.pending ?? 0,
      max_workers: 2,
      db_size: 4096,
      workspace_bytes: 0,
      executor: 'local'
    };
  }

  /** The workers `workers()` lists (none unless a test sets some). */
  workerList: IWorker[] = [];

  async workers(): Promise<IWorker[]> {
    this.calls.push('workers');
    this._maybeFail('workers');
    return this.workerList.map(worker => ({ ...worker }));
  }

  async drainWorker(id: string): Promise<IWorker> {
    this.calls.push(`drainWorker ${id}`);
    this._maybeFail('drainWorker');
    const worker = this.workerList.find(item => item.id === id);
    if (!worker) {
      throw new Error(`no worker with id ${id}`);
    }
    Object.assign(worker, { state: 'draining', drainable: false });
    return { ...worker };
  }

  async status(ids: readonly number[]): Promise<IStatusResponse> {
    this.calls.push(`status ${ids.join(',')}`);
    const snapshot = ids.map(id => this.jobs.get(id));
    const gate = this.statusGate;
    if (gate) {
      await gate.promise;
    }
    this._maybeFail('status');
    return {
      jobs: snapshot
        .filter((job): job is IJob => !!job)
        .map(job => ({ ...job })),
      missing: ids.filter((_, i) => !snapshot[i])
    };
  }

  async me(): Promise<IMe> {
    this.calls.push('me');
    this._maybeFail('me');
    return { ...this.me_ };
  }

  async clearFinished(query: IWhoseQuery = {}): Promise<number[]> {
    this.calls.push('clearFinished');
    this.cleared.push(!!query.mine);
    return [];
  }

  async get(id: number): Promise<IJob> {
    this.calls.push(`get ${id}`);
    this._maybeFail('get');
    const job = this.jobs.get(id);
    if (!job) {
      throw new Error(`no job with id ${id}`);
    }
    return { ...job };
  }

  /** The server's release: a held pending job is queued (it runs after nothing here). */
  async release(id: number): Promise<IJob> {
    this.calls.push(`release ${id}`);
    this._maybeFail('release');
    const job = this.jobs.get(id);
    if (!job?.actions.includes('release')) {
      throw new Error(`job ${id} is not held`);
    }
    return { ...this.set(id, { status: 'queued', held: false }) };
  }

  async outputs(id: number): Promise<IOutputs> {
    this.calls.push(`outputs ${id}`);
    this._maybeFail('outputs');
    return { outputs: this.outputsOf.get(id) ?? [] };
  }

  /** The schedules, by id. */
  schedulesById = new Map<number, ISchedule>();
  /** The server's typed submit: a typed job, queued (its parameters as sent). */
  async submitTyped(request: ITypedSubmit): Promise<IJob> {
    this.calls.push('submitTyped');
    this.requests.push(request);
    this._maybeBad();
    const id = Math.max(0, ...this.jobs.keys()) + 1;
    const job = makeJob(id, {
      kind: 'typed',
      name: request.spec?.name ?? request.type,
      type: request.type,
      parameters: request.parameters ?? {}
    });
    this.add(job);
    return { ...job };
  }

  /** The bodies of the jobs and schedules created or changed, in order. */
  requests: unknown[] = [];
  /** When set, the next create (job or schedule) answers this 400 message. */
  badRequest: string | null = null;

  /** The server's notebook submission: a notebook job, queued. */
  async submitNotebook(request: INotebookJobRequest): Promise<IJob> {
    this.calls.push('submitNotebook');
    this.requests.push(request);
    this._maybeBad();
    const id = Math.max(0, ...this.jobs.keys()) + 1;
    const job = makeJob(id, {
      kind: 'notebook' as IJob['kind'],
      name: request.spec.name ?? request.notebook.path,
      options: { notebook: request.notebook }
    });
    this.add(job);
    return { ...job };
  }

  async schedules(): Promise<ISchedule[]> {
    this.calls.push('schedules');
    this._maybeFail('schedules');
    return [...this.schedulesById.values()].map(s => ({ ...s }));
  }

  async createSchedule(spec: IScheduleSpec): Promise<ISchedule> {
    this.calls.push('createSchedule');
    this.requests.push(spec);
    this._maybeBad();
    const id = Math.max(0, ...this.schedulesById.keys()) + 1;
    const schedule = makeSchedule(id, spec);
    this.schedulesById.set(id, schedule);
    return { ...schedule };
  }

  async updateSchedule(
    id: number,
    fields: Partial<IScheduleSpec>
  ): Promise<ISchedule> {
    this.calls.push(`updateSchedule ${id}`);
    this.requests.push(fields);
    this._maybeBad();
    const old = this._schedule(id);
    const schedule = {
      ...old,
      ...fields,
      timezone: fields.timezone ?? old.timezone, // the server fills in its own zone
      job: { ...(fields.job ?? old.job) }
    };
    this.schedulesById.set(id, schedule);
    return { ...schedule };
  }

  async deleteSchedule(id: number): Promise<void> {
    this.calls.push(`deleteSchedule ${id}`);
    this._schedule(id);
    this.schedulesById.delete(id);
  }

  async pauseSchedule(id: number): Promise<ISchedule> {
    this.calls.push(`pauseSchedule ${id}`);
    const schedule = { ...this._schedule(id), paused: true, next_run: null };
    this.schedulesById.set(id, schedule);
    return { ...schedule };
  }

  async resumeSchedule(id: number): Promise<ISchedule> {
    this.calls.push(`resumeSchedule ${id}`);
    const schedule = {
      ...this._schedule(id),
      paused: false,
      next_run: 1_700_003_600
    };
    this.schedulesById.set(id, schedule);
    return { ...schedule };
  }

  /** The server's preview: a cron expression it does not read is a 400 naming `cron`. */
  async previewSchedule(query: IPreviewQuery): Promise<ISchedulePreview> {
    this.calls.push(`preview ${JSON.stringify(query)}`);
    if ('cron' in query && query.cron.split(' ').length !== 5) {
      throw new Error(`Invalid cron expression: ${query.cron}`);
    }
    const step = 'every' in query ? query.every : 3600;
    return {
      description:
        'every' in query
          ? `Every ${query.every} seconds`
          : `Cron ${query.cron}`,
      next: [1, 2, 3].map(n => 1_700_000_000 + n * step)
    };
  }

  /** This fake as the client type the model expects. */
  asClient(): JobsClient {
    return this as unknown as JobsClient;
  }

  /** Move a job and build the event the server would emit for it. */
  move(id: number, status: JobStatus, fields: Partial<IJob> = {}): IJobEvent {
    const previous = this.jobs.get(id)!.status;
    const job = this.set(id, { status, ...fields });
    return makeEvent(id, {
      name: job.name,
      owner: job.owner,
      user: job.user,
      status,
      previous,
      attempt: job.attempt,
      reason: job.reason,
      progress: job.progress,
      actions: job.actions,
      type: job.type,
      summary: job.summary
    });
  }

  private _schedule(id: number): ISchedule {
    const schedule = this.schedulesById.get(id);
    if (!schedule) {
      throw new Error(`no schedule with id ${id}`);
    }
    return schedule;
  }

  /** The server's rule for whose jobs: `mine`, `user`, else everyone's you may see. */
  private _whose(query: IListQuery): string | undefined {
    if (query.mine || !this.me_.can_read_all) {
      return this.me_.username;
    }
    return query.user;
  }

  private _maybeBad(): void {
    const message = this.badRequest;
    if (message !== null) {
      this.badRequest = null;
      throw new Error(message);
    }
  }

  private _maybeFail(method: string): void {
    const error = this.failing[method];
    if (error) {
      throw error;
    }
  }
}

/** A schedule as the server answers it, from its spec. */
export function makeSchedule(
  id: number,
  spec: Partial<IScheduleSpec> = {}
): ISchedule {
  return {
    name: `schedule-${id}`,
    target: { kind: 'notebook', path: 'report.ipynb', parameters: {} },
    cron: null,
    every: 3600,
    overlap: 'skip',
    catch_up: 'latest',
    paused: false,
    owner: '',
    user: ME.username,
    user_display_name: ME.display_name,
    ...spec,
    timezone: spec.timezone ?? 'UTC', // the server fills in its own zone
    job: { ...spec.job },
    id,
    created_at: 1_700_000_000,
    next_run: spec.paused ? null : 1_700_003_600,
    last_run: null
  };
}

/**
 * Render a ReactWidget now and return once React has committed the result to the DOM.
 * (`renderPromise` alone resolves on an idle callback, which a loaded machine can reach
 * before React commits; `act` flushes the render first.)
 */
export async function rendered(widget: ReactWidget): Promise<void> {
  // Only around this render: other renders of the test are not React's to wait for.
  const scope = globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean };
  const before = scope.IS_REACT_ACT_ENVIRONMENT;
  scope.IS_REACT_ACT_ENVIRONMENT = true;
  try {
    await act(async () => {
      MessageLoop.sendMessage(widget, Widget.Msg.UpdateRequest);
      await widget.renderPromise;
    });
  } finally {
    scope.IS_REACT_ACT_ENVIRONMENT = before;
  }
}

/** Poll `check` until it holds, failing after `timeout` ms. */
export async function waitFor(
  check: () => boolean,
  timeout = 5000
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met in time');
    }
    await new Promise(resolve => setTimeout(resolve, 10));
  }
}

/** A stand-in for JupyterLab's EventManager: the same stream type, fed by the test. */
export class FakeEvents {
  stream = new Stream<any, any>(this);
  serverSettings = {} as any;
  isDisposed = false;
  dispose(): void {
    this.isDisposed = true;
  }
  async emit(): Promise<void> {
    throw new Error('not used');
  }
  asManager(): Event.IManager {
    return this as unknown as Event.IManager;
  }
}
