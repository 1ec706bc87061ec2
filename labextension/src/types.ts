/**
 * The shapes of every REST payload and event of jupyter_jobs, as the server sends them.
 *
 * REST types come from `./openapi`, which `npm run build:types` generates from
 * `jupyter_jobs/server/openapi.yaml` at every build (openapi-typescript): the server's file is
 * the one source. The names below are thin aliases the rest of the code reads; only what the
 * OpenAPI file cannot say (the event payload, which `events/job.yaml` describes and
 * `src/__tests__/openapi.spec.ts` checks, and nbformat's output type) is written by hand.
 */

import type * as nbformat from '@jupyterlab/nbformat';

import type { components } from './openapi';
import { actionValues, statusValues } from './openapi';

type Schemas = components['schemas'];

/** Where a job is in its life (DESIGN.md, Statuses). */
export type JobStatus = Schemas['Status'];

/** Every status, in the order of a job's life (openapi.yaml's order): the filter chips' order. */
export const STATUSES: readonly JobStatus[] = statusValues;

/** Statuses in which something still happens to the job (the rest are finished). */
export const ACTIVE_STATUSES: ReadonlySet<JobStatus> = new Set<JobStatus>([
  'pending',
  'queued',
  'running'
]);

/** Why a job failed; `null` on a job that did not fail. */
export type JobReason = Schemas['Reason'];

/** What a user may ask of a job; a job lists the ones it allows now in `actions`. */
export type Action = Schemas['Action'];

/** Every action, in the order a UI shows them. */
export const ACTIONS: readonly Action[] = actionValues;

/** What the job's code last reported through `jupyter_jobs.progress()`. */
export type IProgress = Schemas['Progress'];

/** A failure as text: the server never holds exception objects. */
export type IJobError = Schemas['JobError'];

/** One job, as `models.Job.to_json()` serializes it. Times are seconds since the epoch. */
export type IJob = Schemas['Job'];

/** Number of jobs per status. Statuses with no job may be absent. */
export type StatusCounts = Partial<Record<JobStatus, number>>;

/** `GET /jobs/api/jobs`: one page, newest first. */
export type IJobPage = Schemas['JobList'];

/** `GET /jobs/api/jobs/{id}/logs`: a slice of the log, for tailing. */
export type ILogChunk = Schemas['LogChunk'];

/** `GET /jobs/api/jobs/{id}/outputs`: the captured display outputs, nbformat's. */
export interface IOutputs {
  outputs: nbformat.IOutput[];
}

/** `GET /jobs/api/status?ids=`: the batched status read. */
export type IStatusResponse = Schemas['StatusList'];

/** `GET /jobs/api/stats`. */
export type IStats = Schemas['Stats'];

/** A job type (`GET /jobs/api/types`): a name, the JSON schema of its parameters, where it
 * comes from. */
export type IJobType = Schemas['JobType'];

/** `POST /jobs/api/jobs` for a typed job: the type, its parameters, the job's options. */
export type ITypedSubmit = Schemas['TypedSubmit'];

/** `GET /jobs/api/me`: whose jobs are "mine", and whether the user may see and act on everyone's. */
export type IMe = Schemas['Me'];
/** One worker process (`GET /jobs/api/workers`); `state` is what it is doing. */
export type IWorker = Schemas['Worker'];

/** `GET /jobs/api/workers`: this server's workers, then other consumers'. */
export type IWorkerList = Schemas['WorkerList'];

/** The body of every error response: jupyter_server's shape plus `type` and `detail`. */
export type IErrorBody = Schemas['Error'];

/** What happened to a job, as the `job` event's `action` says. */
export type JobAction =
  | 'created'
  | 'transition'
  | 'progress'
  | 'cancel_requested'
  | 'released'
  | 'deleted';

/** The schema id of the events the server emits for jobs. */
export const EVENT_SCHEMA_ID = 'https://events.jupyter.org/jupyter_jobs/job';

/** One entry of a `job` event: a job's changes over one window (`jobs` in `jupyter_jobs/server/events/job.yaml`). */
export interface IJobEvent {
  action: JobAction;
  id: number;
  name: string;
  owner: string;
  /** The username of the user the job belongs to ('' for jobs from before users). */
  user: string;
  status: JobStatus;
  previous: JobStatus | null;
  reason: JobReason | null;
  attempt: number;
  progress: IProgress | null;
  actions: Action[];
  /** The schedule whose run the job is, or null. */
  schedule_id: number | null;
  /** A typed job's job type, or null. */
  type: string | null;
  /** What a typed job's type made of its run (any JSON), or null: as in its record. */
  summary: IJob['summary'];
}
