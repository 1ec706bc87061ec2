/**
 * The shapes of every REST payload and event of jupyter_jobs, as the server sends them.
 *
 * They mirror `jupyter_jobs/models.py` (`Job.to_json()`) and `jupyter_jobs/server/openapi.yaml`;
 * `src/__tests__/openapi.spec.ts` checks the field lists against the OpenAPI file so the two
 * cannot drift apart silently.
 */

import type * as nbformat from '@jupyterlab/nbformat';

/** Where a job is in its life (DESIGN.md, Statuses). */
export type JobStatus =
  'pending' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** Every status, in the order of a job's life: the order of the filter chips. */
export const STATUSES: readonly JobStatus[] = [
  'pending',
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled'
];

/** Statuses in which something still happens to the job: it can be cancelled. */
export const ACTIVE_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  'pending',
  'queued',
  'running'
]);

/** Statuses from which an explicit retry is allowed (models.TRANSITIONS). */
export const RETRYABLE_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  'failed',
  'cancelled'
]);

/** Why a job failed; `null` on a job that did not fail. */
export type JobReason =
  | 'error'
  | 'timeout'
  | 'expired'
  | 'worker_lost'
  | 'interrupted'
  | 'dependency_failed'
  | 'payload';

/** What the job's code last reported through `jupyter_jobs.progress()`. */
export interface IProgress {
  done: number;
  total: number | null;
  message: string | null;
  at?: number | null;
}

/** A failure as text: the server never holds exception objects. */
export interface IJobError {
  type: string;
  message: string;
  traceback: string;
}

/** One job, as `models.Job.to_json()` serializes it. Times are seconds since the epoch. */
export interface IJob {
  id: number;
  name: string;
  kind: 'function' | 'cell';
  owner: string;
  status: JobStatus;
  reason: JobReason | null;
  priority: number;
  attempt: number;
  retries: number;
  retry_delay: number;
  worker_losses: number;
  timeout: number | null;
  after: number[];
  run_at: number | null;
  expires_at: number | null;
  not_before: number | null;
  created_at: number;
  queued_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  cancel_requested: boolean;
  progress: IProgress | null;
  error: IJobError | null;
  interpreter: string | null;
  cwd: string | null;
  idempotency_key: string | null;
  options: { [key: string]: unknown };
  consumer: string | null;
  lease_until: number | null;
  payload_size: number;
  result_size: number | null;
  log_size: number;
  has_outputs: boolean;
}

/** Number of jobs per status. Statuses with no job may be absent. */
export type StatusCounts = Partial<Record<JobStatus, number>>;

/** `GET /jobs/api/jobs`: one page, newest first. */
export interface IJobPage {
  jobs: IJob[];
  next_cursor: string | null;
  counts: StatusCounts;
}

/** `GET /jobs/api/jobs/{id}/logs`: a slice of the log, for tailing. */
export interface ILogChunk {
  data: string;
  offset: number;
  next_offset: number;
  size: number;
}

/** `GET /jobs/api/jobs/{id}/outputs`: the captured display outputs. */
export interface IOutputs {
  outputs: nbformat.IOutput[];
}

/** `GET /jobs/api/status?ids=`: the batched status read. */
export interface IStatusResponse {
  jobs: IJob[];
  missing: number[];
}

/** `GET /jobs/api/stats`. */
export interface IStats {
  counts: StatusCounts;
  running: number;
  queued: number;
  max_workers: number;
  db_size: number;
  executor: string;
}

/** The body of every error response. */
export interface IErrorBody {
  error: string;
  detail: unknown;
  type: string;
}

/** What happened to a job, as the `job` event's `action` says. */
export type JobAction =
  'created' | 'transition' | 'progress' | 'cancel_requested' | 'deleted';

/** The schema id of the events the server emits for jobs. */
export const EVENT_SCHEMA_ID = 'https://events.jupyter.org/jupyter_jobs/job';

/** The payload of one `job` event (`jupyter_jobs/server/events/job.yaml`). */
export interface IJobEvent {
  action: JobAction;
  id: number;
  name: string;
  owner: string;
  status: JobStatus;
  previous: JobStatus | null;
  reason: JobReason | null;
  attempt: number;
  progress: IProgress | null;
}
