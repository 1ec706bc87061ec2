/**
 * Hand-written shapes of issue 13's endpoints (notebook jobs and schedules), as the contract
 * between the server and the front end states them. openapi.yaml does not describe them yet;
 * once it does, these become aliases of the generated types, as in `types.ts`.
 */

import type { IJob, JobStatus } from './types';

/** A JSON value, as parameters carry them. */
export type JSONValue =
  string | number | boolean | null | JSONValue[] | { [key: string]: JSONValue };

/** The `notebook` part of `POST /jobs/api/jobs` for a notebook job. */
export interface INotebookSource {
  /** Relative to the server's root directory. */
  path: string;
  parameters: Record<string, JSONValue>;
  /** Null: the notebook's own kernel. */
  kernel_name: string | null;
}

/** The job options the dialog sets; the server takes more (see `Job`). */
export interface IJobOptions {
  name?: string;
  priority?: number;
  timeout?: number | null;
  retries?: number;
}

/** `POST /jobs/api/jobs` for a notebook: no payload, the server snapshots the notebook. */
export interface INotebookJobRequest {
  spec: IJobOptions & { kind: 'notebook' };
  notebook: INotebookSource;
}

/** What a schedule runs. REST creates notebook targets; function ones come from Python. */
export interface IScheduleTarget {
  kind: 'notebook' | 'function';
  path?: string;
  parameters?: Record<string, JSONValue>;
  kernel_name?: string | null;
}

/** `POST /jobs/api/schedules` (and any subset of it for PATCH). Exactly one of cron/every. */
export interface IScheduleSpec {
  name: string;
  target: IScheduleTarget;
  cron: string | null;
  /** Seconds, at least 60. */
  every: number | null;
  /** IANA zone; null is the server's local zone. */
  timezone: string | null;
  overlap?: 'skip' | 'queue';
  catch_up?: 'latest' | 'none' | 'all';
  paused?: boolean;
  job?: IJobOptions;
}

/** The last run of a schedule. */
export interface IScheduleRun {
  job_id: number;
  status: JobStatus;
  scheduled_time: number;
  finished_at: number | null;
}

/** A schedule as the server answers it. Times are seconds since the epoch. */
export interface ISchedule extends IScheduleSpec {
  id: number;
  created_at: number;
  /** Null while paused. */
  next_run: number | null;
  last_run: IScheduleRun | null;
}

/** `GET /jobs/api/schedules`. */
export interface IScheduleList {
  schedules: ISchedule[];
}

/** `GET /jobs/api/schedules/preview`. */
export interface ISchedulePreview {
  description: string;
  next: number[];
}

/** The query of a preview: a cron expression with a zone, or an interval in seconds. */
export type IPreviewQuery =
  { cron: string; timezone: string | null } | { every: number };

/** The fields issue 13 adds to a job's JSON (absent from servers before it). */
export interface IScheduledFields {
  schedule_id?: number | null;
  scheduled_time?: number | null;
}

/** A job with issue 13's fields. */
export type INotebookAwareJob = IJob & IScheduledFields;

/** Whether a job runs a whole notebook (kind "notebook"). */
export function isNotebookJob(job: Pick<IJob, 'kind'>): boolean {
  return (job.kind as string) === 'notebook';
}

/** The notebook a notebook job ran, as `options.notebook` shows it; null for other jobs. */
export function jobNotebookPath(job: IJob): string | null {
  const notebook = job.options?.notebook as { path?: unknown } | undefined;
  return typeof notebook?.path === 'string' ? notebook.path : null;
}
