/**
 * Small React pieces shared by the panel and the detail view: the progress bar, the action
 * buttons of a job, and a clock for elapsed times.
 */

import {
  deleteIcon,
  LabIcon,
  refreshIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { CommandIDs } from './commands';
import type { Action, IJob } from './types';

/** A bar for the job's progress; indeterminate while it runs without a known total. */
export function ProgressBar(props: {
  job: IJob;
  fraction: number | null;
  trans: TranslationBundle;
}): JSX.Element {
  const { job, fraction, trans } = props;
  const label = trans.__('Progress of job %1', job.id);
  if (job.status === 'running' && fraction === null) {
    return (
      <div
        className="jp-JobsPanel-bar jp-mod-indeterminate"
        role="progressbar"
        aria-label={label}
        data-status={job.status}
      >
        <div className="jp-JobsPanel-bar-fill" />
      </div>
    );
  }
  const value = job.status === 'succeeded' ? 1 : (fraction ?? 0);
  return (
    <div
      className="jp-JobsPanel-bar"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(value * 100)}
      data-status={job.status}
    >
      <div
        className="jp-JobsPanel-bar-fill"
        style={{ width: `${value * 100}%` }}
      />
    </div>
  );
}

/**
 * A button for each action offered on the job now: `actions`, the job's own as the server
 * decides them, less what this user may not do (`JobsModel.actionsFor`).
 */
export function ActionButtons(props: {
  job: IJob;
  actions: Action[];
  commands: CommandRegistry;
  trans: TranslationBundle;
  withLabels?: boolean;
}): JSX.Element {
  const { job, actions, commands, trans, withLabels } = props;
  const run = (command: string) => (event: React.MouseEvent) => {
    event.stopPropagation();
    void commands.execute(command, { id: job.id });
  };
  return (
    <span className="jp-JobsPanel-actions">
      {actions.includes('cancel') && (
        <ActionButton
          text={trans.__('Cancel')}
          label={trans.__('Cancel job %1', job.id)}
          icon={stopIcon}
          withLabel={withLabels}
          onClick={run(CommandIDs.cancel)}
        />
      )}
      {actions.includes('retry') && (
        <ActionButton
          text={trans.__('Retry')}
          label={trans.__('Retry job %1', job.id)}
          icon={refreshIcon}
          withLabel={withLabels}
          onClick={run(CommandIDs.retry)}
        />
      )}
      {actions.includes('release') && (
        <ActionButton
          text={trans.__('Release')}
          label={trans.__('Release job %1', job.id)}
          icon={runIcon}
          withLabel={withLabels}
          onClick={run(CommandIDs.release)}
        />
      )}
      {actions.includes('delete') && (
        <ActionButton
          text={trans.__('Delete')}
          label={trans.__('Delete job %1', job.id)}
          icon={deleteIcon}
          withLabel={withLabels}
          onClick={run(CommandIDs.remove)}
        />
      )}
    </span>
  );
}

/** An icon button with an accessible label, and optionally its text beside the icon. */
function ActionButton(props: {
  text: string;
  label: string;
  icon: LabIcon;
  withLabel?: boolean;
  onClick: (event: React.MouseEvent) => void;
}): JSX.Element {
  return (
    <button
      type="button"
      className={
        props.withLabel
          ? 'jp-mod-styled jp-JobDetail-button'
          : 'jp-JobsPanel-action'
      }
      aria-label={props.label}
      title={props.label}
      onClick={props.onClick}
    >
      <props.icon.react tag="span" elementPosition="center" />
      {props.withLabel && <span>{props.text}</span>}
    </button>
  );
}

/**
 * The current time in seconds, ticking every second while `ticking` (elapsed times of active jobs
 * move) and still otherwise.
 */
export function useClock(ticking: boolean): number {
  const [now, setNow] = React.useState(() => Date.now() / 1000);
  React.useEffect(() => {
    setNow(Date.now() / 1000);
    if (!ticking) {
      return;
    }
    const timer = setInterval(() => setNow(Date.now() / 1000), 1000);
    return () => clearInterval(timer);
  }, [ticking]);
  return now;
}
