/**
 * A typed client for the jupyter_jobs REST API (`/jobs/api`).
 *
 * Every request goes through `ServerConnection.makeRequest`, so it carries the same credentials
 * (token, XSRF cookie) as the rest of JupyterLab and works under any base URL.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  INotebookJobRequest,
  IPreviewQuery,
  ISchedule,
  IScheduleList,
  ISchedulePreview,
  IScheduleSpec
} from './nbtypes';
import type {
  IErrorBody,
  IJob,
  IJobPage,
  IJobType,
  ILogChunk,
  IMe,
  IOutputs,
  IStats,
  IStatusResponse,
  ITypedSubmit,
  IWorker,
  IWorkerList,
  JobStatus
} from './types';

/** The path of the API below the server's base URL. */
export const API_PATH = 'jobs/api';

/** Filters and paging of a listing. Empty values are left out of the query string. */
export interface IListQuery {
  status?: readonly JobStatus[];
  owner?: string;
  q?: string;
  limit?: number;
  cursor?: string | null;
  /** Only the runs of this schedule. */
  schedule?: number;
  /** Only the jobs of this user (by username). */
  user?: string;
  /** Only your own jobs (`GET /jobs/api/me`'s user). */
  mine?: boolean;
  /** Only the typed jobs of this job type. */
  type?: string;
}

/** Which user's jobs numbers or a clear cover: yours, or every user's you may. */
export interface IWhoseQuery {
  mine?: boolean;
}

/** Whose jobs the numbers cover, and of which job type ('' or absent: of every kind). */
export interface IStatsQuery extends IWhoseQuery {
  type?: string;
}

/** `mine` as the server reads it: `true`, or left out. */
function mineParam(mine: boolean | undefined): string | undefined {
  return mine ? 'true' : undefined;
}

/** Build `base + path + ?query`, leaving out empty parameters. */
export function apiUrl(
  baseUrl: string,
  path: string,
  query: Record<string, string | number | null | undefined> = {}
): string {
  const url = URLExt.join(baseUrl, API_PATH, path);
  const params = Object.entries(query)
    .filter(
      ([, value]) => value !== undefined && value !== null && value !== ''
    )
    .map(
      ([key, value]) =>
        `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
    );
  return params.length ? `${url}?${params.join('&')}` : url;
}

/** The query parameters of a listing, as the server reads them. */
export function listParams(
  query: IListQuery
): Record<string, string | number | undefined> {
  return {
    status: query.status?.length ? query.status.join(',') : undefined,
    owner: query.owner || undefined,
    q: query.q?.trim() || undefined,
    limit: query.limit,
    cursor: query.cursor || undefined,
    schedule: query.schedule,
    user: query.user || undefined,
    mine: mineParam(query.mine),
    type: query.type || undefined
  };
}

/** The REST client. One instance is shared by the panel, the detail views and the status bar. */
export class JobsClient {
  constructor(options: JobsClient.IOptions = {}) {
    this.serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
  }

  /** The settings (base URL, credentials, fetch) used for every request. */
  readonly serverSettings: ServerConnection.ISettings;

  /** One page of jobs, newest first. */
  list(query: IListQuery = {}): Promise<IJobPage> {
    return this._json<IJobPage>('GET', 'jobs', listParams(query));
  }

  /** One job. */
  get(id: number): Promise<IJob> {
    return this._json<IJob>('GET', `jobs/${id}`);
  }

  /** Several jobs at once; ids the server does not know come back in `missing`. */
  status(ids: readonly number[]): Promise<IStatusResponse> {
    return this._json<IStatusResponse>('GET', 'status', {
      ids: ids.join(',')
    });
  }

  /** Ask to cancel: immediate for a waiting job, a kill for a running one. */
  cancel(id: number): Promise<IJob> {
    return this._json<IJob>('POST', `jobs/${id}/cancel`);
  }

  /** Queue a failed or cancelled job again. */
  retry(id: number): Promise<IJob> {
    return this._json<IJob>('POST', `jobs/${id}/retry`);
  }

  /** Let a job submitted with `hold` run (it keeps its place in the queue). */
  release(id: number): Promise<IJob> {
    return this._json<IJob>('POST', `jobs/${id}/release`);
  }

  /** Delete a job that is not running, with its workspace. */
  async remove(id: number): Promise<void> {
    await this._request('DELETE', `jobs/${id}`);
  }

  /**
   * Delete every finished job at once (running and waiting ones stay): yours with `mine`, else
   * every user's you may delete; the ids deleted.
   */
  async clearFinished(query: IWhoseQuery = {}): Promise<number[]> {
    const params = { mine: mineParam(query.mine) };
    return (
      await this._json<{ deleted: number[] }>('POST', 'jobs/clear', params)
    ).deleted;
  }

  /**
   * The log from byte `offset` on: of the whole log (its `parts` say which stream wrote what),
   * or of one `stream` (offsets in that stream's bytes).
   */
  logs(
    id: number,
    offset = 0,
    limit?: number,
    stream?: string | null
  ): Promise<ILogChunk> {
    return this._json<ILogChunk>('GET', `jobs/${id}/logs`, {
      offset,
      limit,
      stream
    });
  }

  /** The display outputs the job captured, as nbformat outputs. */
  outputs(id: number): Promise<IOutputs> {
    return this._json<IOutputs>('GET', `jobs/${id}/outputs`);
  }

  /**
   * Queue depth, running jobs, counts per status (of your jobs with `mine`, of one job type's
   * with `type`: counts the server keeps, read without a listing).
   */
  stats(query: IStatsQuery = {}): Promise<IStats> {
    return this._json<IStats>('GET', 'stats', {
      mine: mineParam(query.mine),
      type: query.type || undefined
    });
  }

  /** Who the server takes this user for, and whether they may see everyone's jobs. */
  me(): Promise<IMe> {
    return this._json<IMe>('GET', 'me');
  }

  /** The worker processes that run the jobs. */
  async workers(): Promise<IWorker[]> {
    return (await this._json<IWorkerList>('GET', 'workers')).workers;
  }

  /** Let a worker finish its current job, then stop it; the worker as it is now. */
  drainWorker(id: string): Promise<IWorker> {
    return this._json<IWorker>(
      'POST',
      `workers/${encodeURIComponent(id)}/drain`
    );
  }

  /** Submit a notebook as a job; the server snapshots it now. */
  submitNotebook(request: INotebookJobRequest): Promise<IJob> {
    return this._json<IJob>('POST', 'jobs', undefined, request);
  }

  /** The executed notebook of a job (nbformat JSON); 404 while none exists yet. */
  notebook(id: number): Promise<Record<string, unknown>> {
    return this._json<Record<string, unknown>>('GET', `jobs/${id}/notebook`);
  }

  /** The executed notebook rendered by nbconvert, as an HTML page. */
  async notebookHtml(id: number): Promise<string> {
    const response = await this._request('GET', `jobs/${id}/notebook`, {
      format: 'html'
    });
    return response.text();
  }

  /** Every job type, with the JSON schema of its parameters. */
  async types(): Promise<IJobType[]> {
    return (await this._json<{ types: IJobType[] }>('GET', 'types')).types;
  }

  /** Start a job of a job type; the server checks the parameters against its schema. */
  submitTyped(request: ITypedSubmit): Promise<IJob> {
    return this._json<IJob>('POST', 'jobs', undefined, request);
  }

  /** Every schedule. */
  async schedules(): Promise<ISchedule[]> {
    return (await this._json<IScheduleList>('GET', 'schedules')).schedules;
  }

  /** Create a schedule. */
  createSchedule(spec: IScheduleSpec): Promise<ISchedule> {
    return this._json<ISchedule>('POST', 'schedules', undefined, spec);
  }

  /** Change some fields of a schedule. */
  updateSchedule(
    id: number,
    fields: Partial<IScheduleSpec>
  ): Promise<ISchedule> {
    return this._json<ISchedule>('PATCH', `schedules/${id}`, undefined, fields);
  }

  /** Delete a schedule (its past runs stay jobs). */
  async deleteSchedule(id: number): Promise<void> {
    await this._request('DELETE', `schedules/${id}`);
  }

  /** Stop a schedule from firing until resumed. */
  pauseSchedule(id: number): Promise<ISchedule> {
    return this._json<ISchedule>('POST', `schedules/${id}/pause`);
  }

  /** Let a paused schedule fire again. */
  resumeSchedule(id: number): Promise<ISchedule> {
    return this._json<ISchedule>('POST', `schedules/${id}/resume`);
  }

  /** The schedule in plain words and its next three run times. */
  previewSchedule(query: IPreviewQuery): Promise<ISchedulePreview> {
    return this._json<ISchedulePreview>('GET', 'schedules/preview', {
      ...query
    });
  }

  private async _json<T>(
    method: string,
    path: string,
    query?: Record<string, string | number | null | undefined>,
    body?: unknown
  ): Promise<T> {
    const response = await this._request(method, path, query, body);
    return (await response.json()) as T;
  }

  private async _request(
    method: string,
    path: string,
    query?: Record<string, string | number | null | undefined>,
    body?: unknown
  ): Promise<Response> {
    const url = apiUrl(this.serverSettings.baseUrl, path, query);
    const init: RequestInit =
      body === undefined
        ? { method }
        : {
            method,
            body: JSON.stringify(body),
            headers: { 'Content-Type': 'application/json' }
          };
    const response = await ServerConnection.makeRequest(
      url,
      init,
      this.serverSettings
    );
    if (!response.ok) {
      // The server answers errors in jupyter_server's shape (`message`, `reason`, plus `type`
      // and `detail`): JupyterLab's own error type reads them, no decoder of ours needed.
      // The body stays readable for `errorDetail`.
      const error = await ServerConnection.ResponseError.create(
        response.clone()
      );
      errorResponses.set(error, response);
      throw error;
    }
    return response;
  }
}

/** The response of each error the client threw, whose body `errorDetail` reads. */
const errorResponses = new WeakMap<Error, Response>();

/**
 * The `detail` of an error the server answered (e.g. the bad parameters of a typed submit, by
 * path), or null for other errors.
 */
export async function errorDetail(error: unknown): Promise<unknown> {
  const response =
    error instanceof Error ? errorResponses.get(error) : undefined;
  if (!response) {
    return null;
  }
  try {
    return ((await response.clone().json()) as IErrorBody).detail ?? null;
  } catch {
    return null;
  }
}

/** The JobsClient namespace. */
export namespace JobsClient {
  /** Options to build a client. */
  export interface IOptions {
    /** Defaults to `ServerConnection.makeSettings()`. */
    serverSettings?: ServerConnection.ISettings;
  }
}
