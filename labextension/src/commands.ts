/**
 * The extension's commands: the actions on a job (cancel, retry, delete), opening the panel, a
 * job's detail view and the notebook that submitted it.
 *
 * The panel, the detail views and the notifications all act through these commands, so a
 * confirmation or an error message is written once.
 */

import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';

import { JobsModel } from './model';
import type { IJob } from './types';
import { ACTIVE_STATUSES } from './types';

/** Command ids. */
export namespace CommandIDs {
  export const openPanel = 'jupyter-jobs:open-panel';
  export const show = 'jupyter-jobs:show';
  export const cancel = 'jupyter-jobs:cancel';
  export const retry = 'jupyter-jobs:retry';
  export const remove = 'jupyter-jobs:delete';
  export const openNotebook = 'jupyter-jobs:open-notebook';
}

/** What the commands need from the application. */
export interface ICommandContext {
  commands: CommandRegistry;
  model: JobsModel;
  /** Show the Jobs panel. */
  openPanel: () => void;
  /** Open (or focus) the detail view of a job. */
  openDetail: (id: number) => void;
}

/** Register the commands; their `id` argument is a job id. */
export function registerCommands(context: ICommandContext): void {
  const { commands, model } = context;

  commands.addCommand(CommandIDs.openPanel, {
    label: 'Show Jobs',
    caption: 'Show the background jobs panel',
    execute: () => context.openPanel()
  });

  commands.addCommand(CommandIDs.show, {
    label: args => (args.id !== undefined ? `Show Job ${args.id}` : 'Show Job'),
    execute: args => context.openDetail(jobId(args))
  });

  commands.addCommand(CommandIDs.cancel, {
    label: 'Cancel Job',
    caption: 'Stop the job (a running job is killed)',
    execute: args =>
      act('Could not cancel the job', async () => {
        const job = await loadJob(model, jobId(args));
        if (
          job.status === 'running' &&
          !(await confirm(
            'Cancel running job?',
            `Job ${job.id} “${job.name}” is running. Cancelling ends its process; its work so far is lost.`,
            'Cancel job',
            'Keep running'
          ))
        ) {
          return;
        }
        model.upsert(await model.client.cancel(job.id));
      })
  });

  commands.addCommand(CommandIDs.retry, {
    label: 'Retry Job',
    caption: 'Queue the job again',
    execute: args =>
      act('Could not retry the job', async () => {
        model.upsert(await model.client.retry(jobId(args)));
      })
  });

  commands.addCommand(CommandIDs.remove, {
    label: 'Delete Job',
    caption: 'Delete the job with its log, result and outputs',
    execute: args =>
      act('Could not delete the job', async () => {
        const job = await loadJob(model, jobId(args));
        if (ACTIVE_STATUSES.has(job.status)) {
          throw new Error(
            `Job ${job.id} “${job.name}” is ${job.status}: cancel it before deleting it.`
          );
        }
        if (
          await confirm(
            'Delete job?',
            `Delete job ${job.id} “${job.name}” with its log, result and outputs? This cannot be undone.`,
            'Delete',
            'Keep'
          )
        ) {
          await model.client.remove(job.id);
          model.remove(job.id);
        }
      })
  });

  commands.addCommand(CommandIDs.openNotebook, {
    label: 'Open Notebook',
    caption: 'Open the notebook that submitted the job',
    execute: args =>
      commands.execute('docmanager:open', { path: String(args.path) })
  });
}

/** The numeric job id a command was called with; a clear error otherwise. */
function jobId(args: { [key: string]: unknown }): number {
  const id = Number(args.id);
  if (!Number.isInteger(id)) {
    throw new Error(`a job command needs an integer "id", got ${args.id}`);
  }
  return id;
}

async function loadJob(model: JobsModel, id: number): Promise<IJob> {
  return model.get(id) ?? (await model.client.get(id));
}

async function confirm(
  title: string,
  body: string,
  accept: string,
  reject: string
): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [
      Dialog.cancelButton({ label: reject }),
      Dialog.warnButton({ label: accept })
    ]
  });
  return result.button.accept;
}

/**
 * Run an action; a failure is shown to the user with the server's message (e.g. "job 4 is
 * running: cancel it first") rather than left as an unhandled rejection.
 */
async function act(title: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    await showErrorMessage(title, error as Error);
  }
}
