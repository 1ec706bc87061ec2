/**
 * The jobs the sidebar shows: the loaded window of the list, its filters and paging, and how
 * server events and polls change it.
 *
 * The list is a window over the server's listing, newest first: the first pages, loaded on
 * demand with the server's cursor. Events patch what they carry (status, progress) at once, then
 * the full records of the jobs they touched are fetched in one batched `/status` read, so a
 * burst of 500 events costs a few requests, not 500.
 *
 * Events cost O(1) however many jobs are loaded: the jobs are held in a map by id and their
 * order in a `JobIndex`; the `jobs` array is built only when read (once per render). A job is
 * added only when it belongs to the filter and to the loaded range: a job newer than all loaded
 * goes on top, and the oldest loaded one makes room for it (the cursor moves up with it), so a
 * burst of new jobs does not grow the list; older ones are left to "load more".
 *
 * "Mine" (the filter's `mine`, and always for a user who may not see everyone's jobs) keeps the
 * list, its numbers and the status bar's to the jobs of the user `GET /jobs/api/me` names; events
 * about other users' jobs then change nothing.
 *
 * The numbers per status are the server's: events move them at once, and every burst of events
 * that moved them is followed by one read of the real ones, so a missed or late event (a server
 * restart loses the events of its recovery) is corrected within a batch. An answer never
 * replaces the numbers of a newer one.
 */

import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { JobsClient } from './client';
import { JobIndex } from './jobindex';
import type {
  Action,
  IJob,
  IJobEvent,
  IJobPage,
  IMe,
  IStats,
  JobStatus,
  JobReason,
  StatusCounts
} from './types';
import { ACTIVE_STATUSES } from './types';

/**
 * What the list shows: the statuses chosen (none = all), a search over job names, whether
 * only the user's own jobs ("Mine") or everyone's, and a job type ('' for jobs of any kind).
 */
export interface IJobsFilter {
  statuses: readonly JobStatus[];
  query: string;
  mine: boolean;
  type: string;
}

/** A job that moved from one status to another, seen through an event or a poll. */
export interface IJobTransition {
  id: number;
  name: string;
  owner: string;
  user: string;
  status: JobStatus;
  previous: JobStatus | null;
  reason: JobReason | null;
}

/** Most ids in one `/status` request, so its URL stays short. */
const STATUS_BATCH = 200;

/** The jobs model shared by the panel, the status bar, the notifier and the detail views. */
export class JobsModel implements IDisposable {
  constructor(options: JobsModel.IOptions) {
    this.client = options.client;
    this._pageSize = options.pageSize ?? 100;
    this._rows = this._pageSize;
    this._fetchDelay = options.fetchDelay ?? 250;
  }

  /** The REST client the model reads through. */
  readonly client: JobsClient;

  /** Emitted after any change of what the list shows. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted when a job's status changes (events, polls, actions); used for notifications. */
  get transition(): ISignal<this, IJobTransition> {
    return this._transition;
  }

  /** Emitted with a job id whenever news about that job arrives, loaded or not. */
  get jobTouched(): ISignal<this, number> {
    return this._jobTouched;
  }

  /** The loaded jobs, newest first (built when read after a change: once per render). */
  get jobs(): readonly IJob[] {
    if (this._jobs === null) {
      this._jobs = this._index.newestFirst().map(id => this._byId.get(id)!);
    }
    return this._jobs;
  }

  /** How many times a job was moved between loaded ones (O(loaded) each); tests count them. */
  get moves(): number {
    return this._index.moves;
  }

  /** Whether older jobs remain to be loaded with `loadMore()`. */
  get hasMore(): boolean {
    return this._cursor !== null;
  }

  /** Whether a page is being loaded. */
  get loading(): boolean {
    return this._loading;
  }

  /** Whether the first page arrived at least once. */
  get loaded(): boolean {
    return this._loaded;
  }

  /** The last failure to reach the server, cleared by the next success. */
  get error(): string | null {
    return this._error;
  }

  /**
   * Jobs per status among those the search and the type match (all statuses, not only the
   * loaded window):
   * the numbers beside the status filters.
   */
  get counts(): StatusCounts {
    return this._counts;
  }

  /** Jobs per status over the whole store, whatever the filter: the status bar's numbers. */
  get totals(): StatusCounts {
    return this._totals;
  }

  /** The current filter. */
  get filter(): IJobsFilter {
    return this._filter;
  }

  /** Whether the model is disposed. */
  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Who the server takes this user for; null until the first load read it. */
  get me(): IMe | null {
    return this._me;
  }

  /** Whether the list keeps to the user's own jobs: chosen, or all the user may see. */
  get mine(): boolean {
    return this._filter.mine || (this._me !== null && !this._me.can_read_all);
  }

  /** Whether jobs of `user` are this user's (true while the server has not said who). */
  isMine(user: string): boolean {
    return this._me === null || user === this._me.username;
  }

  /**
   * What this user may ask of `job` now: its `actions` when it is theirs or they may act on
   * every user's jobs (`GET /jobs/api/me`), else none, so the sidebar offers no button the
   * server would refuse. (An authorizer that allows some other users' jobs only is still asked
   * by the server for each action.)
   */
  actionsFor(job: Pick<IJob, 'actions' | 'user'>): Action[] {
    if (this._me === null || this._me.can_write_all || this.isMine(job.user)) {
      return job.actions;
    }
    return [];
  }

  /** A loaded job by id. */
  get(id: number): IJob | undefined {
    return this._byId.get(id);
  }

  /** Whether a job passes the current filter (the same rule the server applies). */
  matches(
    job: Pick<IJob, 'status' | 'name' | 'owner' | 'user' | 'type'>
  ): boolean {
    const { statuses } = this._filter;
    if (statuses.length && !statuses.includes(job.status)) {
      return false;
    }
    return (
      this._isShown(job.user) &&
      this._matchesQuery(job) &&
      this._matchesType(job)
    );
  }

  /** Change the filter and load the first page for it. */
  setFilter(filter: Partial<IJobsFilter>): Promise<void> {
    this._filter = {
      statuses: filter.statuses ?? this._filter.statuses,
      query: filter.query ?? this._filter.query,
      mine: filter.mine ?? this._filter.mine,
      type: filter.type ?? this._filter.type
    };
    return this.load();
  }

  /** Load the first page, replacing what was loaded. */
  async load(): Promise<void> {
    const generation = ++this._generation;
    const seq = this._seq;
    const ask = this._askCounts();
    this._loading = true;
    this._changed.emit();
    try {
      if (this._me === null) {
        this._me = await this._whoAmI();
      }
      const [page, stats] = await Promise.all([
        this.client.list(this._query(null, this._pageSize)),
        this.client.stats(this._whose())
      ]);
      if (generation !== this._generation) {
        return;
      }
      this._setCounts(ask, page.counts, stats.counts);
      this._byId.clear();
      this._index.clear();
      this._rows = this._pageSize;
      this._insertAll(page.jobs);
      this._cursor = page.next_cursor;
      this._loaded = true;
      this._error = null;
      // Events that arrived while the page was on its way may be newer than it.
      for (const [id, touched] of this._touched) {
        if (touched > seq) {
          this._scheduleFetch(id);
        }
      }
    } catch (error) {
      this._fail(generation, error);
    } finally {
      if (generation === this._generation) {
        this._loading = false;
        this._changed.emit();
      }
    }
  }

  /** Load the next page of older jobs. */
  async loadMore(): Promise<void> {
    if (this._cursor === null || this._loading) {
      return;
    }
    const generation = this._generation;
    const ask = this._askCounts();
    this._loading = true;
    this._changed.emit();
    try {
      const page = await this.client.list(
        this._query(this._cursor, this._pageSize)
      );
      if (generation !== this._generation) {
        return;
      }
      this._insertAll(page.jobs);
      this._rows += this._pageSize;
      this._cursor = page.next_cursor;
      this._setCounts(ask, page.counts, null);
      this._error = null;
    } catch (error) {
      this._fail(generation, error);
    } finally {
      if (generation === this._generation) {
        this._loading = false;
        this._changed.emit();
      }
    }
  }

  /**
   * Apply the entries of one server event (a window of changes, one entry per job), then say
   * once that the list changed.
   *
   * Returns false when an entry does not follow from what the model knows (a transition from
   * another status than the one shown): events were missed, and the caller should reconcile.
   */
  applyEvents(events: readonly IJobEvent[]): boolean {
    let inStep = true;
    for (const event of events) {
      inStep = this._apply(event) && inStep;
    }
    this._changed.emit();
    return inStep;
  }

  /** Apply one entry: patch what it carries now, fetch the full record soon after. */
  applyEvent(event: IJobEvent): boolean {
    return this.applyEvents([event]);
  }

  private _apply(event: IJobEvent): boolean {
    this._touched.set(event.id, ++this._seq);
    this._countEvent(event);
    const job = this._byId.get(event.id);
    const inStep =
      !job ||
      event.action !== 'transition' ||
      event.previous === null ||
      event.previous === job.status;
    if (event.action === 'deleted') {
      this._removeJob(event.id);
    } else if (job) {
      const carriesProgress = event.action === 'progress' || !!event.progress;
      this._put(
        {
          ...job,
          status: event.status,
          reason: event.reason,
          attempt: event.attempt,
          progress: carriesProgress ? event.progress : job.progress,
          cancel_requested:
            job.cancel_requested || event.action === 'cancel_requested',
          held: job.held && event.action !== 'released',
          actions: event.actions,
          // A typed job's entry carries its summary as its record has it (set when its run
          // ends, cleared when it runs again): shown without reading the job.
          type: event.type ?? job.type,
          summary: event.type !== null ? event.summary : job.summary
        },
        job.status
      );
      if (event.action !== 'progress') {
        this._scheduleFetch(event.id);
      }
    } else {
      // A job created and ended within one window comes as `created` with its final status.
      const ended =
        event.action === 'created' && !ACTIVE_STATUSES.has(event.status);
      if (
        ended ||
        (event.action === 'transition' && event.previous !== event.status)
      ) {
        this._transition.emit(transitionOf(event));
      }
      if (this.matches(event) && this._inWindow(event.id)) {
        this._insert(provisionalJob(event));
        this._scheduleFetch(event.id);
      }
    }
    this._jobTouched.emit(event.id);
    return inStep;
  }

  /**
   * Fetch, in batches, the full records of the jobs that events touched, and the real numbers
   * per status once events moved them.
   */
  async flush(): Promise<void> {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    // Jobs that left the list meanwhile (a burst pushed them out) need no reading.
    const ids = [...this._pending].filter(
      id => this._byId.has(id) || this._inWindow(id)
    );
    this._pending.clear();
    const counting = this._countsMoved ? this._readCounts() : null;
    this._countsMoved = false;
    if (!ids.length) {
      if (counting) {
        await counting;
        this._changed.emit();
      }
      return;
    }
    const generation = this._generation;
    for (let start = 0; start < ids.length; start += STATUS_BATCH) {
      const batch = ids.slice(start, start + STATUS_BATCH);
      const seq = this._seq;
      try {
        const answer = await this.client.status(batch);
        if (generation !== this._generation) {
          return;
        }
        this._merge(answer.jobs, answer.missing, seq);
        this._error = null;
      } catch (error) {
        this._fail(generation, error);
      }
    }
    await counting;
    this._changed.emit();
  }

  /**
   * Reconcile with the server: re-read the first page and the active jobs loaded beyond it.
   * Used by the poll (the fallback when events do not arrive, and a slow safety net when they
   * do). Returns whether anything the list shows changed.
   */
  async refresh(): Promise<boolean> {
    if (!this._loaded) {
      await this.load();
      return this._loaded;
    }
    const generation = this._generation;
    const seq = this._seq;
    const ask = this._askCounts();
    const before = this._signature();
    let page: IJobPage;
    let stats: IStats;
    try {
      [page, stats] = await Promise.all([
        this.client.list(this._query(null, this._pageSize)),
        this.client.stats(this._whose())
      ]);
    } catch (error) {
      this._fail(generation, error);
      this._changed.emit();
      return false;
    }
    if (generation !== this._generation) {
      return false;
    }
    this._error = null;
    this._setCounts(ask, page.counts, stats.counts);
    this._mergeFirstPage(page, seq);
    const oldest = page.jobs.length
      ? page.jobs[page.jobs.length - 1].id
      : Infinity;
    const beyond = this.jobs
      .filter(job => job.id < oldest && ACTIVE_STATUSES.has(job.status))
      .map(job => job.id);
    for (const id of beyond) {
      this._pending.add(id);
    }
    await this.flush();
    const changed = this._signature() !== before;
    this._changed.emit();
    return changed;
  }

  /** Put a job the server just returned (after an action) into the list. */
  upsert(job: IJob): void {
    this._touched.set(job.id, ++this._seq);
    this._merge([job], [], this._seq);
    this._changed.emit();
  }

  /** Forget a job the server deleted. */
  remove(id: number): void {
    this._touched.set(id, ++this._seq);
    this._merge([], [id], this._seq);
    this._changed.emit();
  }

  /** Stop timers and disconnect listeners. */
  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    Signal.clearData(this);
  }

  /** Who the server takes this user for; null (and a warning) when it cannot say. */
  private async _whoAmI(): Promise<IMe | null> {
    try {
      return await this.client.me();
    } catch (error) {
      console.warn('jupyter-jobs: cannot tell whose jobs are mine', error);
      return null;
    }
  }

  /** The `mine` of a request: there under "Mine" only. */
  private _whose(): { mine?: true } {
    return this.mine ? { mine: true } : {};
  }

  /** Whether jobs of `user` are shown: all of them, or the user's own under "Mine". */
  private _isShown(user: string): boolean {
    return !this.mine || this.isMine(user);
  }

  /**
   * The server's search (`Store._filters`): the text anywhere in the name or in the owner (the
   * notebook's path), ignoring ASCII case as SQLite's LIKE does.
   */
  private _matchesQuery(job: Pick<IJob, 'name' | 'owner'>): boolean {
    const q = foldAscii(this._searchText());
    return (
      !q || foldAscii(job.name).includes(q) || foldAscii(job.owner).includes(q)
    );
  }

  /** The type filter (`?type=`): a job's type is in its record and in its events. */
  private _matchesType(job: Pick<IJob, 'type'>): boolean {
    return !this._filter.type || job.type === this._filter.type;
  }

  /** The search text as sent to the server. */
  private _searchText(): string {
    return this._filter.query.trim();
  }

  private _query(cursor: string | null, limit: number) {
    return {
      status: this._filter.statuses,
      q: this._searchText(),
      ...this._ofType(),
      limit,
      cursor,
      ...this._whose()
    };
  }

  /** The `type` of a request: there while a type is chosen. */
  private _ofType(): { type?: string } {
    return this._filter.type ? { type: this._filter.type } : {};
  }

  /** Whether a job with this id belongs to the loaded window (newer than the oldest loaded). */
  private _inWindow(id: number): boolean {
    if (this._cursor === null) {
      return true;
    }
    const oldest = this._index.oldest;
    return oldest !== undefined && id > oldest;
  }

  /** Merge fresh records; `seq` is the event counter when they were requested. */
  private _merge(jobs: IJob[], missing: number[], seq: number): void {
    for (const id of missing) {
      if (this._isNewer(id, seq)) {
        continue;
      }
      this._removeJob(id);
    }
    for (const job of jobs) {
      if (this._isNewer(job.id, seq)) {
        // An event arrived while this record was on its way: it may be older than what we
        // show. Read the job again rather than step back.
        this._scheduleFetch(job.id);
        continue;
      }
      const current = this._byId.get(job.id);
      if (current) {
        this._put(job, current.status);
      } else if (this.matches(job) && this._inWindow(job.id)) {
        this._insert(job);
      }
    }
  }

  /** Merge the first page: jobs in its id range that it no longer lists are gone. */
  private _mergeFirstPage(page: IJobPage, seq: number): void {
    const listed = new Set(page.jobs.map(job => job.id));
    const oldest =
      page.next_cursor === null || !page.jobs.length
        ? -Infinity
        : page.jobs[page.jobs.length - 1].id;
    const gone = this.jobs
      .filter(job => job.id >= oldest && !listed.has(job.id))
      .map(job => job.id);
    this._merge(page.jobs, gone, seq);
  }

  private _isNewer(id: number, seq: number): boolean {
    return (this._touched.get(id) ?? 0) > seq;
  }

  /** Update a loaded job, or drop it when it no longer passes the filter. */
  private _put(job: IJob, previous: JobStatus): void {
    if (this.matches(job)) {
      this._byId.set(job.id, job);
      this._jobs = null;
    } else {
      this._removeJob(job.id);
    }
    this._emitTransition(job, previous);
  }

  private _emitTransition(job: IJob, previous: JobStatus): void {
    if (job.status !== previous) {
      this._transition.emit({
        id: job.id,
        name: job.name,
        owner: job.owner,
        user: job.user,
        status: job.status,
        previous,
        reason: job.reason
      });
    }
  }

  /** Add a job to the list; past the loaded pages' size, the oldest loaded one makes room. */
  private _insert(job: IJob): void {
    this._byId.set(job.id, job);
    this._index.add(job.id);
    this._jobs = null;
    while (this._index.size > this._rows) {
      this._byId.delete(this._index.dropOldest()!);
      // "Load more" goes on from the oldest job still loaded.
      this._cursor = String(this._index.oldest);
    }
  }

  private _insertAll(jobs: IJob[]): void {
    for (const job of jobs) {
      if (!this._byId.has(job.id)) {
        this._byId.set(job.id, job);
      }
    }
    this._index.addAll(jobs.map(job => job.id));
    this._jobs = null;
  }

  private _removeJob(id: number): void {
    if (!this._byId.delete(id)) {
      return;
    }
    this._index.delete(id);
    this._jobs = null;
  }

  /** Keep the per-status numbers in step with events between two reads of the real ones. */
  private _countEvent(event: IJobEvent): void {
    const moves: [JobStatus | null, number][] = [];
    if (event.action === 'created') {
      moves.push([event.status, 1]);
    } else if (event.action === 'deleted') {
      moves.push([event.status, -1]);
    } else if (
      event.action === 'transition' &&
      event.previous !== event.status
    ) {
      moves.push([event.previous, -1], [event.status, 1]);
    }
    if (!moves.length || !this._isShown(event.user)) {
      return;
    }
    this._totals = applyMoves(this._totals, moves);
    if (this._matchesQuery(event) && this._matchesType(event)) {
      this._counts = applyMoves(this._counts, moves);
    }
    this._countsMoved = true;
    this._scheduleFlush();
  }

  /** Number a request that answers with counts, so that only the newest answer is applied. */
  private _askCounts(): number {
    return ++this._countsAsked;
  }

  /** Apply counts read by request `ask`, unless a later request's answer is applied already. */
  private _setCounts(
    ask: number,
    counts: StatusCounts,
    totals: StatusCounts | null
  ): void {
    if (ask < this._countsApplied) {
      return;
    }
    this._countsApplied = ask;
    this._counts = { ...counts };
    if (totals) {
      this._totals = { ...totals };
    }
  }

  /**
   * Read the real numbers: the totals, and the counts within the search (a one-job listing
   * carries them) or of the type (`stats?type=`, the counts the server keeps per type).
   */
  private async _readCounts(): Promise<void> {
    const generation = this._generation;
    const ask = this._askCounts();
    const q = this._filter.query.trim();
    try {
      const [stats, within] = await Promise.all([
        this.client.stats(this._whose()),
        q
          ? this.client.list({
              q,
              ...this._ofType(),
              limit: 1,
              ...this._whose()
            })
          : this._filter.type
            ? this.client.stats({ ...this._whose(), ...this._ofType() })
            : null
      ]);
      if (generation === this._generation) {
        this._setCounts(ask, (within ?? stats).counts, stats.counts);
      }
    } catch (error) {
      this._fail(generation, error);
    }
  }

  private _scheduleFetch(id: number): void {
    this._pending.add(id);
    this._scheduleFlush();
  }

  private _scheduleFlush(): void {
    if (this._timer === null && !this._isDisposed) {
      this._timer = setTimeout(() => {
        this._timer = null;
        void this.flush();
      }, this._fetchDelay);
    }
  }

  private _fail(generation: number, error: unknown): void {
    if (generation !== this._generation) {
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    this._error = message;
    console.error('jupyter-jobs: request to the jobs API failed', error);
  }

  /** A digest of what the list shows, to tell whether a poll found anything new. */
  private _signature(): string {
    return this.jobs
      .map(
        job =>
          `${job.id}:${job.status}:${job.attempt}:${job.progress?.done ?? ''}`
      )
      .join(',');
  }

  /** The `jobs` array as last built; null after a change. */
  private _jobs: IJob[] | null = null;
  private _byId = new Map<number, IJob>();
  private _index = new JobIndex();
  /** How many jobs the loaded pages hold at most (page size times pages loaded). */
  private _rows: number;
  private _cursor: string | null = null;
  private _counts: StatusCounts = {};
  private _totals: StatusCounts = {};
  private _filter: IJobsFilter = {
    statuses: [],
    query: '',
    mine: false,
    type: ''
  };
  private _me: IMe | null = null;
  private _loading = false;
  private _loaded = false;
  private _error: string | null = null;
  private _generation = 0;
  private _seq = 0;
  private _touched = new Map<number, number>();
  private _pending = new Set<number>();
  private _countsMoved = false;
  private _countsAsked = 0;
  private _countsApplied = 0;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _pageSize: number;
  private _fetchDelay: number;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
  private _transition = new Signal<this, IJobTransition>(this);
  private _jobTouched = new Signal<this, number>(this);
}

/** The JobsModel namespace. */
export namespace JobsModel {
  /** Options to build a model. */
  export interface IOptions {
    client: JobsClient;
    /** Jobs per page (default 100). */
    pageSize?: number;
    /** How long events are collected before their jobs are re-read, in ms (default 250). */
    fetchDelay?: number;
  }
}

/** Lower case for A-Z only: SQLite's LIKE folds no other letters. */
function foldAscii(text: string): string {
  return text.replace(/[A-Z]/g, c => c.toLowerCase());
}

function applyMoves(
  counts: StatusCounts,
  moves: [JobStatus | null, number][]
): StatusCounts {
  const next = { ...counts };
  for (const [status, delta] of moves) {
    if (status) {
      next[status] = Math.max(0, (next[status] ?? 0) + delta);
    }
  }
  return next;
}

function transitionOf(event: IJobEvent): IJobTransition {
  return {
    id: event.id,
    name: event.name,
    owner: event.owner,
    user: event.user,
    status: event.status,
    previous: event.previous,
    reason: event.reason
  };
}

/** A stand-in record built from an event, shown until the full record arrives. */
export function provisionalJob(event: IJobEvent): IJob {
  return {
    id: event.id,
    name: event.name,
    kind: event.type !== null ? 'typed' : 'function',
    owner: event.owner,
    user: event.user,
    user_display_name: '',
    status: event.status,
    reason: event.reason,
    priority: 0,
    attempt: event.attempt,
    retries: 0,
    retry_delay: 0,
    worker_losses: 0,
    timeout: null,
    after: [],
    run_at: null,
    expires_at: null,
    not_before: null,
    created_at: Date.now() / 1000,
    queued_at: null,
    started_at: null,
    finished_at: null,
    cancel_requested: event.action === 'cancel_requested',
    held: event.actions.includes('release'),
    schedule_id: event.schedule_id,
    scheduled_time: null,
    type: event.type,
    parameters: null,
    summary: event.summary,
    channel: null,
    progress: event.progress,
    error: null,
    interpreter: null,
    cwd: null,
    idempotency_key: null,
    options: {},
    consumer: null,
    lease_until: null,
    payload_size: 0,
    result_size: null,
    log_size: 0,
    has_outputs: false,
    fresh_worker: false,
    actions: event.actions
  };
}
