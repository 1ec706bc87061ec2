/**
 * The extension's commands: the actions on a job (cancel, retry, release, delete), opening the
 * panel, a
 * job's detail view and the notebook that submitted it.
 *
 * The panel, the detail views and the notifications all act through these commands, so a
 * confirmation or an error message is written once.
 */

import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';

import { finishedCounts, statusWord } from './format';
import { JobsModel } from './model';
import type { Action, IJob } from './types';

/** Command ids. */
export namespace CommandIDs {
  export const openPanel = 'jupyter-jobs:open-panel';
  export const show = 'jupyter-jobs:show';
  export const cancel = 'jupyter-jobs:cancel';
  export const retry = 'jupyter-jobs:retry';
  export const release = 'jupyter-jobs:release';
  export const remove = 'jupyter-jobs:delete';
  export const openNotebook = 'jupyter-jobs:open-notebook';
  export const clearFinished = 'jupyter-jobs:clear-finished';
  /** Start a job of a job type from a form made from its schema (typeDialog.tsx). */
  export const newTypedJob = 'jupyter-jobs:new-typed-job';
}

/** What the commands need from the application. */
export interface ICommandContext {
  commands: CommandRegistry;
  model: JobsModel;
  /** Show the Jobs panel. */
  openPanel: () => void;
  /** Open (or focus) the detail view of a job. */
  openDetail: (id: number) => Promise<void>;
  /**
   * Open a notebook by its path relative to the server root: in JupyterLab's main area, in a
   * new browser tab in Notebook 7. Defaults to `docmanager:open`.
   */
  openNotebook?: (path: string) => Promise<unknown>;
  translator?: ITranslator;
}

/** The arguments of the commands that act on one job. */
const JOB_ARGS = {
  args: {
    type: 'object' as const,
    properties: { id: { type: 'integer' as const, description: 'The job id' } },
    required: ['id']
  }
};

/** Register the commands; their `id` argument is a job id. */
export function registerCommands(context: ICommandContext): void {
  const { commands, model } = context;
  const trans = (context.translator ?? nullTranslator).load('jupyter_jobs');

  commands.addCommand(CommandIDs.openPanel, {
    label: trans.__('Show Jobs'),
    caption: trans.__('Show the background jobs panel'),
    describedBy: { args: { type: 'object', properties: {} } },
    execute: () => context.openPanel()
  });

  commands.addCommand(CommandIDs.show, {
    label: args =>
      args.id !== undefined
        ? trans.__('Show Job %1', String(args.id))
        : trans.__('Show Job'),
    describedBy: JOB_ARGS,
    execute: args => context.openDetail(jobId(args))
  });

  commands.addCommand(CommandIDs.cancel, {
    label: trans.__('Cancel Job'),
    caption: trans.__('Stop the job (a running job is killed)'),
    describedBy: JOB_ARGS,
    isEnabled: args => offers(model, args, 'cancel'),
    execute: args =>
      act(trans.__('Could not cancel the job'), async () => {
        const job = await loadJob(model, jobId(args));
        if (
          job.status === 'running' &&
          !(await confirm(
            trans.__('Cancel running job?'),
            trans.__(
              'Job %1 “%2” is running. Cancelling ends its process; its work so far is lost.',
              job.id,
              job.name
            ),
            trans.__('Cancel job'),
            trans.__('Keep running')
          ))
        ) {
          return;
        }
        model.upsert(await model.client.cancel(job.id));
      })
  });

  commands.addCommand(CommandIDs.retry, {
    label: trans.__('Retry Job'),
    caption: trans.__('Queue the job again'),
    describedBy: JOB_ARGS,
    isEnabled: args => offers(model, args, 'retry'),
    execute: args =>
      act(trans.__('Could not retry the job'), async () => {
        model.upsert(await model.client.retry(jobId(args)));
      })
  });

  commands.addCommand(CommandIDs.release, {
    label: trans.__('Release Job'),
    caption: trans.__('Let the held job run'),
    describedBy: JOB_ARGS,
    isEnabled: args => offers(model, args, 'release'),
    execute: args =>
      act(trans.__('Could not release the job'), async () => {
        model.upsert(await model.client.release(jobId(args)));
      })
  });

  commands.addCommand(CommandIDs.remove, {
    label: trans.__('Delete Job'),
    caption: trans.__('Delete the job with its log, result and outputs'),
    describedBy: JOB_ARGS,
    isEnabled: args => offers(model, args, 'delete'),
    execute: args =>
      act(trans.__('Could not delete the job'), async () => {
        const job = await loadJob(model, jobId(args));
        if (!job.actions.includes('delete')) {
          throw new Error(
            trans.__(
              'Job %1 “%2” is %3: cancel it before deleting it.',
              job.id,
              job.name,
              statusWord(job.status, trans)
            )
          );
        }
        if (
          await confirm(
            trans.__('Delete job?'),
            trans.__(
              'Delete job %1 “%2” with its log, result and outputs? This cannot be undone.',
              job.id,
              job.name
            ),
            trans.__('Delete'),
            trans.__('Keep')
          )
        ) {
          await model.client.remove(job.id);
          model.remove(job.id);
        }
      })
  });

  commands.addCommand(CommandIDs.openNotebook, {
    label: trans.__('Open Notebook'),
    caption: trans.__('Open the notebook that submitted the job'),
    describedBy: {
      args: {
        type: 'object',
        properties: {
          path: {
            type: 'string',
            description: 'The notebook path, relative to the server root'
          }
        },
        required: ['path']
      }
    },
    execute: args =>
      (context.openNotebook ?? openInDocManager)(String(args.path))
  });

  commands.addCommand(CommandIDs.clearFinished, {
    label: trans.__('Clear Finished Jobs'),
    caption: trans.__(
      'Delete every succeeded, failed and cancelled job with its log, result and outputs'
    ),
    describedBy: { args: { type: 'object', properties: {} } },
    isEnabled: () => finishedCounts(model.totals).total > 0,
    execute: () =>
      act(trans.__('Could not clear the finished jobs'), async () => {
        const { total, parts } = finishedCounts(model.totals);
        const which = parts
          .map(([status, count]) => `${count} ${statusWord(status, trans)}`)
          .join(', ');
        if (
          await confirm(
            trans._n(
              'Delete %1 finished job?',
              'Delete %1 finished jobs?',
              total
            ),
            model.mine
              ? trans.__(
                  "Delete every finished job of yours (%1) with its log, result and outputs? Running and waiting jobs, and other users' jobs, stay. This cannot be undone.",
                  which
                )
              : trans.__(
                  'Delete every finished job (%1) with its log, result and outputs? Running and waiting jobs stay. This cannot be undone.',
                  which
                ),
            trans.__('Delete'),
            trans.__('Keep')
          )
        ) {
          // The rows and the counts follow from the server's "deleted" events. Under "Mine"
          // (where the counts are the user's), only the user's own.
          await model.client.clearFinished({ mine: model.mine });
        }
      })
  });

  function openInDocManager(path: string): Promise<unknown> {
    return commands.execute('docmanager:open', { path });
  }
}

/** The numeric job id a command was called with; a clear error otherwise. */
function jobId(args: { [key: string]: unknown }): number {
  const id = Number(args.id);
  if (!Number.isInteger(id)) {
    throw new Error(`a job command needs an integer "id", got ${args.id}`);
  }
  return id;
}

/**
 * Whether the job a command names offers `action` to this user (`JobsModel.actionsFor`). A job
 * the model does not hold is left to the server to judge.
 */
function offers(
  model: JobsModel,
  args: { [key: string]: unknown },
  action: Action
): boolean {
  const job = model.get(Number(args.id));
  return !job || model.actionsFor(job).includes(action);
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
