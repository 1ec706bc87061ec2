/**
 * The workers footer of the Jobs panel: one small chip per worker process (its state's colour
 * and its pid), its detail in the chip's tooltip, and on click a card with pid, host, current
 * job, start, last heartbeat and jobs done, and a Drain button when the worker allows one.
 *
 * Workers are not in the job events: the footer asks `GET /jobs/api/workers` every
 * `WORKERS_POLL` ms while it is on screen and the page is visible, and at once after a drain.
 * Everything from the server is rendered as React text.
 */

import { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { JobsClient } from './client';
import { formatDuration } from './format';
import type { IWorker } from './types';

/** Time between two listings of the workers, in ms. */
export const WORKERS_POLL = 3000;

/** The footer: a line of worker chips, and the card of the chosen one. */
export function WorkersFooter(props: {
  client: JobsClient;
  trans: TranslationBundle;
  poll?: number;
}): JSX.Element {
  const { client, trans } = props;
  const poll = props.poll ?? WORKERS_POLL;
  const ref = React.useRef<HTMLDivElement>(null);
  const [workers, setWorkers] = React.useState<IWorker[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [chosen, setChosen] = React.useState<string | null>(null);

  const refresh = React.useCallback(async () => {
    try {
      setWorkers(await client.workers());
      setError(null);
    } catch (reason) {
      setError(errorText(reason));
    }
  }, [client]);

  React.useEffect(() => {
    void refresh();
    const timer = setInterval(() => {
      // Lumino hides a widget (the panel, the sidebar) with this class.
      const node = ref.current;
      const shown = node !== null && node.closest('.lm-mod-hidden') === null;
      if (shown && document.visibilityState === 'visible') {
        void refresh();
      }
    }, poll);
    return () => clearInterval(timer);
  }, [refresh, poll]);

  const drain = async (worker: IWorker) => {
    try {
      const drained = await client.drainWorker(worker.id);
      setWorkers(list =>
        (list ?? []).map(item => (item.id === drained.id ? drained : item))
      );
      setError(null);
    } catch (reason) {
      setError(errorText(reason));
    }
    void refresh();
  };

  const list = workers ?? [];
  const busy = list.filter(w => w.state === 'busy' || w.state === 'draining');
  const card = list.find(w => w.id === chosen) ?? null;
  return (
    <div
      ref={ref}
      className="jp-JobsWorkers"
      role="region"
      aria-label={trans.__('Workers')}
    >
      <div className="jp-JobsWorkers-line">
        <span className="jp-JobsWorkers-title">
          {trans.__('Workers')}
          {workers !== null && (
            <span className="jp-JobsWorkers-count">
              {trans.__('%1 busy of %2', busy.length, list.length)}
            </span>
          )}
        </span>
        <ul className="jp-JobsWorkers-chips">
          {list.map(worker => (
            <li key={worker.id}>
              <button
                type="button"
                className="jp-JobsWorkers-chip"
                data-worker-id={worker.id}
                data-state={worker.state}
                aria-pressed={worker.id === chosen}
                title={summary(worker, trans)}
                onClick={() =>
                  setChosen(worker.id === chosen ? null : worker.id)
                }
              >
                <span
                  className="jp-JobsWorkers-dot"
                  data-state={worker.state}
                />
                {worker.pid ?? worker.id}
              </button>
            </li>
          ))}
        </ul>
      </div>
      {error && (
        <div className="jp-JobsWorkers-error" role="alert">
          {trans.__('Cannot list the workers: %1', error)}
        </div>
      )}
      {card && (
        <WorkerCard worker={card} trans={trans} onDrain={() => drain(card)} />
      )}
    </div>
  );
}

/** One worker in full, with its Drain button. */
function WorkerCard(props: {
  worker: IWorker;
  trans: TranslationBundle;
  onDrain: () => void;
}): JSX.Element {
  const { worker, trans } = props;
  const now = Date.now() / 1000;
  const fields: [string, string][] = [
    [trans.__('State'), stateWord(worker.state, trans)],
    [trans.__('PID'), worker.pid === null ? '—' : String(worker.pid)],
    [trans.__('Host'), worker.host],
    [trans.__('Job'), jobText(worker, trans)],
    [trans.__('Started'), ago(worker.started_at, now, trans)],
    [trans.__('Heartbeat'), ago(worker.heartbeat_at, now, trans)],
    [trans.__('Jobs done'), String(worker.jobs_done)]
  ];
  if (worker.one_time) {
    fields.push([trans.__('One-time'), trans.__('exits after its job')]);
  }
  return (
    <div
      className="jp-JobsWorkers-card"
      data-worker-id={worker.id}
      aria-label={trans.__('Worker %1', worker.id)}
    >
      <dl>
        {fields.map(([name, value]) => (
          <React.Fragment key={name}>
            <dt>{name}</dt>
            <dd data-field={name}>{value}</dd>
          </React.Fragment>
        ))}
      </dl>
      {worker.drainable && (
        <button
          type="button"
          className="jp-mod-styled jp-JobsWorkers-drain"
          title={trans.__('Let it finish its current job, then stop it')}
          onClick={props.onDrain}
        >
          {trans.__('Drain')}
        </button>
      )}
    </div>
  );
}

/** A worker in one line: the chip's tooltip. */
export function summary(worker: IWorker, trans: TranslationBundle): string {
  const parts = [
    trans.__('pid %1 on %2', worker.pid ?? '?', worker.host),
    stateWord(worker.state, trans),
    jobText(worker, trans),
    trans.__('%1 jobs done', worker.jobs_done)
  ];
  return parts.join(' · ');
}

/** What a worker state is called in the UI. */
export function stateWord(
  state: IWorker['state'],
  trans: TranslationBundle
): string {
  switch (state) {
    case 'starting':
      return trans.__('starting');
    case 'idle':
      return trans.__('idle');
    case 'kept':
      return trans.__("kept for a notebook's next cell");
    case 'busy':
      return trans.__('busy');
    case 'draining':
      return trans.__('draining: stops after its job');
    case 'retiring':
      return trans.__('exiting');
  }
}

function jobText(worker: IWorker, trans: TranslationBundle): string {
  if (worker.job === null) {
    return trans.__('no job');
  }
  return trans.__('job %1 %2', worker.job, worker.job_name ?? '');
}

function ago(
  time: number | null,
  now: number,
  trans: TranslationBundle
): string {
  return time === null
    ? '—'
    : trans.__('%1 ago', formatDuration(Math.max(0, now - time)));
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
