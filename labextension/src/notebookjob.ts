/**
 * Notebook jobs in JupyterLab: "Run as job…" (file browser, notebook toolbar, sidebar, palette),
 * and a notebook job's result: opened read-only, or saved as a copy into the workspace.
 *
 * The result opens as nbconvert's HTML (`GET /jobs/api/jobs/{id}/notebook?format=html`) in an
 * iframe sandboxed with no permissions (no scripts, no same origin): the executed notebook is
 * untrusted output, and the HTML is exactly what the server rendered. Nothing in it can edit the
 * workspace; "Save a copy" writes an editable `.ipynb` for that.
 */

import {
  MainAreaWidget,
  Notification,
  showErrorMessage
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import type { Contents } from '@jupyterlab/services';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { JobsClient } from './client';
import { jobsIcon } from './icons';
import type { IRunResult } from './runDialog';
import { jobNotebookPath } from './nbtypes';

/** Command ids of notebook jobs. */
export namespace NotebookCommandIDs {
  export const runAsJob = 'jupyter-jobs:run-notebook';
  /** The dialog on "On a schedule": of the current notebook, else of a job type. */
  export const newSchedule = 'jupyter-jobs:new-schedule';
  export const openResult = 'jupyter-jobs:open-result';
  export const saveResult = 'jupyter-jobs:save-result';
  export const openSchedules = 'jupyter-jobs:open-schedules';
}

/**
 * The path of the copy of job `id`'s result: `<name>-job<id>.ipynb` beside the source. A source
 * outside the workspace (an absolute path, from the Python API) or none (a notebook sent as
 * content) puts the copy at the workspace's top.
 */
export function copyPath(
  source: string | null,
  name: string,
  id: number
): string {
  if (!source) {
    return `${name.replace(/[\\/:*?"<>|]/g, '_') || 'notebook'}-job${id}.ipynb`;
  }
  const file = source.split(/[/\\]/).pop() || source;
  const stem = file.replace(/\.[^.]*$/, '');
  const absolute = /^([/\\]|[A-Za-z]:[/\\])/.test(source);
  const folder = absolute ? '' : PathExt.dirname(source);
  return PathExt.join(folder, `${stem}-job${id}.ipynb`);
}

/** The executed notebook of a job as a page in a fully sandboxed iframe. */
export class NotebookResult extends Widget {
  constructor(
    id: number,
    html: string,
    trans = nullTranslator.load('jupyter_jobs')
  ) {
    super();
    this.jobId = id;
    this.addClass('jp-JobsNotebookResult');
    this.title.label = trans.__('Result of job %1', id);
    this.title.caption = this.title.label;
    const frame = document.createElement('iframe');
    // No token: scripts, forms, popups and the page's origin are all denied.
    frame.setAttribute('sandbox', '');
    frame.setAttribute('title', this.title.label);
    frame.srcdoc = html;
    this.node.appendChild(frame);
  }

  readonly jobId: number;
}

/** What the notebook-job commands need from the application. */
export interface INotebookCommandContext {
  commands: CommandRegistry;
  client: JobsClient;
  contents: Contents.IManager;
  /** The kernelspecs offered in the dialog. */
  kernels: () => { name: string; display: string }[];
  /** The notebook the command applies to when no `path` is given (selection, current tab). */
  currentNotebook: (fromBrowser: boolean) => string | null;
  /** Add a widget to the main area. */
  addToMain: (widget: MainAreaWidget) => void;
  /** Open a notebook of the workspace. */
  openNotebook: (path: string) => Promise<unknown>;
  /** Called after the dialog created a job or a schedule. */
  submitted: (result: IRunResult) => void;
  /** Show the Schedules view. */
  openSchedules: () => void;
  translator?: ITranslator;
}

/** Register Run as job…, New schedule…, Open result, Save a copy and Show Schedules. */
export function registerNotebookCommands(
  context: INotebookCommandContext
): void {
  const { commands, client } = context;
  const trans = (context.translator ?? nullTranslator).load('jupyter_jobs');
  const jobArgs = {
    args: {
      type: 'object' as const,
      properties: { id: { type: 'integer' as const } },
      required: ['id']
    }
  };

  commands.addCommand(NotebookCommandIDs.runAsJob, {
    label: trans.__('Run as Job…'),
    caption: trans.__(
      'Run this notebook in the background, now or on a schedule'
    ),
    icon: jobsIcon,
    describedBy: {
      args: {
        type: 'object',
        properties: {
          path: { type: 'string' },
          fromBrowser: { type: 'boolean' }
        }
      }
    },
    execute: async args => {
      const path =
        typeof args.path === 'string'
          ? args.path
          : context.currentNotebook(!!args.fromBrowser);
      if (!path) {
        Notification.warning(
          trans.__(
            'Open a notebook or select one in the file browser, then choose Run as Job… again.'
          ),
          { autoClose: 8000 }
        );
        return;
      }
      const { showRunDialog } = await import('./runDialog');
      const result = await showRunDialog(path, {
        client,
        kernels: context.kernels(),
        translator: context.translator
      });
      if (result) {
        context.submitted(result);
      }
    }
  });

  commands.addCommand(NotebookCommandIDs.newSchedule, {
    label: trans.__('New Job Schedule…'),
    caption: trans.__(
      'Run a notebook or a job of a job type at given times (cron or every N minutes)'
    ),
    icon: jobsIcon,
    describedBy: {
      args: { type: 'object', properties: { path: { type: 'string' } } }
    },
    execute: async args => {
      const path =
        typeof args.path === 'string'
          ? args.path
          : (context.currentNotebook(false) ?? '');
      const { showRunDialog } = await import('./runDialog');
      const result = await showRunDialog(path, {
        client,
        kernels: context.kernels(),
        mode: 'schedule',
        translator: context.translator
      });
      if (result) {
        context.submitted(result);
      }
    }
  });

  commands.addCommand(NotebookCommandIDs.openResult, {
    label: trans.__('Open Result'),
    caption: trans.__('Open the executed notebook, read-only'),
    describedBy: jobArgs,
    execute: async args => {
      const id = Number(args.id);
      let html: string;
      try {
        html = await client.notebookHtml(id);
      } catch (error) {
        void showErrorMessage(
          trans.__('Cannot open the result of job %1', id),
          error as Error
        );
        return;
      }
      const widget = new MainAreaWidget({
        content: new NotebookResult(id, html, trans)
      });
      widget.id = `jupyter-jobs-result-${id}`;
      widget.title.icon = jobsIcon;
      context.addToMain(widget);
    }
  });

  commands.addCommand(NotebookCommandIDs.saveResult, {
    label: trans.__('Save a Copy of the Result'),
    caption: trans.__(
      'Write the executed notebook into the workspace and open it'
    ),
    describedBy: jobArgs,
    execute: async args => {
      const id = Number(args.id);
      try {
        const [job, notebook] = await Promise.all([
          client.get(id),
          client.notebook(id)
        ]);
        const path = copyPath(jobNotebookPath(job), job.name, id);
        await context.contents.save(path, {
          type: 'notebook',
          format: 'json',
          content: notebook
        });
        await context.openNotebook(path);
        return path;
      } catch (error) {
        void showErrorMessage(
          trans.__('Cannot save a copy of the result of job %1', id),
          error as Error
        );
      }
    }
  });

  commands.addCommand(NotebookCommandIDs.openSchedules, {
    label: trans.__('Show Job Schedules'),
    caption: trans.__('Show the schedules of notebook jobs'),
    describedBy: { args: { type: 'object', properties: {} } },
    execute: () => context.openSchedules()
  });
}
