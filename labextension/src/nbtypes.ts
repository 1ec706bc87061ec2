/**
 * The shapes of the notebook-job and schedule endpoints. Answers are the types generated from
 * openapi.yaml (`openapi.ts`); requests are the subsets the dialog sends.
 */

import type { components } from './openapi';
import type { IJob } from './types';

type Schemas = components['schemas'];

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
  /** The result channel its finished job (each run's) is delivered to. */
  channel?: string;
}

/** `POST /jobs/api/jobs` for a notebook: no payload, the server snapshots the notebook. */
export interface INotebookJobRequest {
  spec: IJobOptions & { kind: 'notebook' };
  notebook: INotebookSource;
}

/**
 * What a schedule runs. REST creates notebook and typed targets (a job type's name and its
 * parameters); function ones come from Python.
 */
export interface IScheduleTarget {
  kind: 'notebook' | 'function' | 'typed';
  path?: string;
  /** A typed target's job type. */
  type?: string;
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

/** A schedule as the server answers it. Times are seconds since the epoch. */
export type ISchedule = Schemas['Schedule'];

/** `GET /jobs/api/schedules`. */
export type IScheduleList = Schemas['ScheduleList'];

/** `GET /jobs/api/schedules/preview`. */
export type ISchedulePreview = Schemas['SchedulePreview'];

/** The query of a preview: a cron expression with a zone, or an interval in seconds. */
export type IPreviewQuery =
  { cron: string; timezone: string | null } | { every: number };

/** A job; its `schedule_id` and `scheduled_time` say which schedule's run it is. */
export type INotebookAwareJob = IJob;

/** Whether a job runs a whole notebook (kind "notebook"). */
export function isNotebookJob(job: Pick<IJob, 'kind'>): boolean {
  return (job.kind as string) === 'notebook';
}

/** The notebook a notebook job ran, as `options.notebook` shows it; null for other jobs. */
export function jobNotebookPath(job: IJob): string | null {
  const notebook = job.options?.notebook as { path?: unknown } | undefined;
  return typeof notebook?.path === 'string' ? notebook.path : null;
}
