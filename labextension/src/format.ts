/**
 * Small pure helpers that turn job records into what the UI prints: status words, durations,
 * times, progress fractions, the notebook path behind an owner, tracebacks without terminal
 * colours. The one home of these words in the labextension (Python's is `jupyter_jobs/wording.py`);
 * every word goes through the translator.
 */

import type { TranslationBundle } from '@jupyterlab/translation';

import type {
  IJob,
  IProgress,
  JobReason,
  JobStatus,
  StatusCounts
} from './types';
import { ACTIVE_STATUSES, STATUSES } from './types';

/** A status as a word of the user's language (the chips, the rows, messages). */
export function statusWord(
  status: JobStatus,
  trans: TranslationBundle
): string {
  // Spelled out, one call per word, so that the strings can be extracted for translation.
  switch (status) {
    case 'pending':
      return trans.__('pending');
    case 'queued':
      return trans.__('queued');
    case 'running':
      return trans.__('running');
    case 'succeeded':
      return trans.__('succeeded');
    case 'failed':
      return trans.__('failed');
    case 'cancelled':
      return trans.__('cancelled');
  }
}

/** Why a job failed, as a word of the user's language. */
export function reasonWord(
  reason: JobReason,
  trans: TranslationBundle
): string {
  switch (reason) {
    case 'error':
      return trans.__('error');
    case 'timeout':
      return trans.__('timeout');
    case 'expired':
      return trans.__('expired');
    case 'worker_lost':
      return trans.__('worker lost');
    case 'interrupted':
      return trans.__('interrupted');
    case 'dependency_failed':
      return trans.__('dependency failed');
    case 'payload':
      return trans.__('payload');
  }
}

/**
 * The status with what qualifies it, as Python's `wording.status_word` says it: "failed
 * (timeout)", "running (cancelling)", "running, attempt 2".
 */
export function statusText(
  job: Pick<IJob, 'status' | 'reason' | 'cancel_requested' | 'attempt'>,
  trans: TranslationBundle
): string {
  let text = statusWord(job.status, trans);
  if (job.reason) {
    text = trans.__('%1 (%2)', text, reasonWord(job.reason, trans));
  } else if (job.cancel_requested && ACTIVE_STATUSES.has(job.status)) {
    text = trans.__('%1 (cancelling)', text);
  }
  if (job.attempt > 1) {
    text = trans.__('%1, attempt %2', text, job.attempt);
  }
  return text;
}

/** "4s", "2m 05s", "1h 02m": short enough for a list row. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    return `${minutes}m ${pad(s % 60)}s`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    return `${hours}h ${pad(minutes % 60)}m`;
  }
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/**
 * How long the job ran (or has been running); for a job that has not started, how long it has
 * waited. `now` is in seconds since the epoch.
 */
export function elapsedSeconds(job: IJob, now: number): number {
  if (job.started_at !== null) {
    return (job.finished_at ?? now) - job.started_at;
  }
  return (job.finished_at ?? now) - job.created_at;
}

/** A local date and time for a timestamp in seconds, or an em dash when there is none. */
export function formatTime(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '—';
  }
  return new Date(seconds * 1000).toLocaleString();
}

/** The fraction done (0..1), or null when the job reported no total (indeterminate). */
export function progressFraction(progress: IProgress | null): number | null {
  if (!progress || !progress.total || progress.total <= 0) {
    return null;
  }
  return Math.max(0, Math.min(1, progress.done / progress.total));
}

/** "3 / 10", "42 %" or just the count, for the text beside the bar. */
export function progressLabel(progress: IProgress | null): string {
  if (!progress) {
    return '';
  }
  const fraction = progressFraction(progress);
  const count =
    fraction === null
      ? `${progress.done}`
      : `${Math.round(fraction * 100)}% (${progress.done}/${progress.total})`;
  return progress.message ? `${count} · ${progress.message}` : count;
}

/**
 * The path, relative to the server root, of the notebook that owns a job, or null when the owner
 * is not a notebook we can open (`kernel:<id>`, a script, a path outside the root).
 *
 * Kernels name their notebook by `JPY_SESSION_NAME`, which jupyter_server sets to an absolute
 * path for sessions that JupyterLab starts, hence the server root to strip.
 */
export function notebookPath(owner: string, serverRoot = ''): string | null {
  if (!owner || !/\.ipynb$/i.test(owner) || /^kernel:/.test(owner)) {
    return null;
  }
  const path = owner.replace(/\\/g, '/');
  if (!path.startsWith('/') && !/^[A-Za-z]:\//.test(path)) {
    return path;
  }
  const root = serverRoot.replace(/\\/g, '/').replace(/\/+$/, '');
  if (serverRoot && path.startsWith(`${root}/`)) {
    return path.slice(root.length + 1);
  }
  return null;
}

/**
 * Who a job belongs to, as people know them: the display name, with the username when it says
 * something else ("Alice Liddell (alice)"); null for a job of no user (from before users).
 */
export function userText(
  job: Pick<IJob, 'user' | 'user_display_name'>
): string | null {
  const shown = job.user_display_name || job.user;
  if (!shown) {
    return null;
  }
  return job.user && shown !== job.user ? `${shown} (${job.user})` : shown;
}

/** The last segment of a path, for a compact owner column. */
export function basename(path: string): string {
  const parts = path.replace(/\\/g, '/').split('/');
  return parts[parts.length - 1] || path;
}

// ESC [ ... final byte: the colour and cursor sequences IPython puts in tracebacks.
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]|\u001b\][^\u0007]*\u0007/g;

/** Text without terminal escape sequences, for tracebacks and logs shown as plain text. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/**
 * The finished jobs among per-status counts (what "clear finished" deletes): how many, and the
 * statuses that have some, e.g. [["succeeded", 3], ["failed", 1]], in the order of a job's life.
 */
export function finishedCounts(counts: StatusCounts): {
  total: number;
  parts: [JobStatus, number][];
} {
  const parts = STATUSES.filter(status => !ACTIVE_STATUSES.has(status))
    .map(status => [status, counts[status] ?? 0] as [JobStatus, number])
    .filter(([, count]) => count > 0);
  return { total: parts.reduce((sum, [, count]) => sum + count, 0), parts };
}
