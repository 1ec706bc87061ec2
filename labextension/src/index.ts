/* eslint-disable jupyter/prefer-lazy-imports -- the model, the live updates, the panel, the status
   item and the notifier all start with the application (the panel and the status item are on
   screen at once); only the detail view waits for a first use, below. */
/**
 * Wires the jupyter_jobs front end into the application: the Jobs panel in the left area, the
 * detail views, the status-bar item, notifications and the commands.
 *
 * Every token except the application itself is optional, so the same extension runs in
 * JupyterLab and in Notebook 7 (no ILabShell, no status bar there: details open in the right
 * area, since Notebook's main area holds a single document).
 */

import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { INotebookTree } from '@jupyter-notebook/tree';

import { JobsClient } from './client';
import { CommandIDs, registerCommands } from './commands';
import type { JobDetail } from './detail';
import { LiveUpdates } from './events';
import { jobsIcon } from './icons';
import { NotebookCommandIDs, registerNotebookCommands } from './notebookjob';
import { SchedulesView, ScheduleAlerts } from './schedules';
import { historyIcon, Toolbar, ToolbarButton } from '@jupyterlab/ui-components';
import { JobsModel } from './model';
import { JobNotifier } from './notify';
import { JobsPanel } from './panel';
import { JobsStatus } from './statusbar';
import {
  jobRendererFactory,
  JobWatch,
  RENDERER_RANK,
  WIDGET_MIME,
  widgetsBound
} from './renderer';

const PLUGIN_ID = 'jupyter-jobs:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Background jobs (jupyter_jobs): sidebar panel, job details, status bar and notifications.',
  autoStart: true,
  optional: [
    ILabShell,
    ILayoutRestorer,
    ISettingRegistry,
    IRenderMimeRegistry,
    IStatusBar,
    ICommandPalette,
    ITranslator,
    INotebookTree,
    IFileBrowserFactory
  ],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    rendermime: IRenderMimeRegistry | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    translator: ITranslator | null,
    notebookTree: INotebookTree | null,
    browserFactory: IFileBrowserFactory | null
  ): void => {
    const options = { translator: translator ?? undefined };
    const serverRoot = PageConfig.getOption('serverRoot');
    const client = new JobsClient({
      serverSettings: app.serviceManager.serverSettings
    });
    const model = new JobsModel({ client });
    const live = new LiveUpdates({
      model,
      events: app.serviceManager.events ?? null
    });

    const panel = new JobsPanel({
      model,
      commands: app.commands,
      serverRoot,
      ...options
    });
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);
    if (notebookTree) {
      // Notebook 7's tree page: a Jobs tab beside Files and Running, as its Running tab is made.
      const tab = new JobsPanel({
        model,
        commands: app.commands,
        serverRoot,
        ...options
      });
      tab.id = 'jupyter-jobs-tree';
      tab.title.label = (translator ?? nullTranslator)
        .load('jupyter_jobs')
        .__('Jobs');
      notebookTree.addWidget(tab);
    }
    const openPanel = () => {
      app.shell.activateById(panel.id);
      void live.refresh();
    };

    const tracker = new WidgetTracker<MainAreaWidget<JobDetail>>({
      namespace: 'jupyter-jobs-detail'
    });
    const openDetail = async (id: number) => {
      const open = tracker.find(widget => widget.content.jobId === id);
      if (open) {
        app.shell.activateById(open.id);
        void open.content.refresh();
        return;
      }
      // The detail view (and the output area it uses) loads on first use.
      const { JobDetail } = await import('./detail');
      const content = new JobDetail({
        id,
        model,
        commands: app.commands,
        rendermime,
        serverRoot,
        ...options
      });
      const widget = new MainAreaWidget({ content });
      widget.id = `jupyter-jobs-detail-${id}`;
      widget.title.icon = jobsIcon;
      if (labShell) {
        app.shell.add(widget, 'main');
      } else {
        // Notebook 7: one detail at a time in the right area.
        tracker.forEach(other => other.dispose());
        app.shell.add(widget, 'right', { rank: 600 });
      }
      void tracker.add(widget);
      app.shell.activateById(widget.id);
    };
    if (restorer && labShell) {
      void restorer.restore(tracker, {
        command: CommandIDs.show,
        args: widget => ({ id: widget.content.jobId }),
        name: widget => String(widget.content.jobId)
      });
    }

    // Notebook 7 opens a notebook in a browser tab of its own, as its file browser does.
    const openNotebook = labShell
      ? undefined
      : async (path: string) =>
          window.open(
            URLExt.join(
              app.serviceManager.serverSettings.baseUrl,
              'notebooks',
              URLExt.encodeParts(path)
            ),
            '_blank'
          );
    registerCommands({
      commands: app.commands,
      model,
      openPanel,
      openDetail,
      openNotebook,
      ...options
    });
    const trans = (translator ?? nullTranslator).load('jupyter_jobs');
    palette?.addItem({
      command: CommandIDs.openPanel,
      category: trans.__('Jobs')
    });
    app.commands.addCommand(CommandIDs.newTypedJob, {
      label: trans.__('New Job of a Job Type…'),
      caption: trans.__(
        'Start a job of a job type, from a form made from its schema'
      ),
      describedBy: { args: { type: 'object', properties: {} } },
      // The dialog (and its JSON schema validator) loads on first use.
      execute: async () => {
        const { showTypedJobDialog } = await import('./typeDialog');
        const job = await showTypedJobDialog({ client, ...options });
        if (job) {
          model.upsert(job);
          await openDetail(job.id);
        }
      }
    });
    palette?.addItem({
      command: CommandIDs.newTypedJob,
      category: trans.__('Jobs')
    });

    const schedules = new SchedulesView({
      client,
      events: app.serviceManager.events ?? null,
      edit: schedule =>
        void import('./runDialog').then(async ({ showRunDialog }) => {
          await showRunDialog(schedule.target.path ?? '', {
            client,
            kernels: kernels(),
            schedule,
            ...options
          });
          await schedules.refresh();
        }),
      openJob: id => void openDetail(id),
      openResult: id =>
        void app.commands.execute(NotebookCommandIDs.openResult, { id }),
      runNotebook: () =>
        void app.commands.execute(NotebookCommandIDs.runAsJob, {}),
      newSchedule: () =>
        void app.commands.execute(NotebookCommandIDs.newSchedule, {}),
      ...options
    });
    schedules.title.icon = historyIcon;
    app.shell.add(schedules, 'left', { rank: 601 });
    restorer?.add(schedules, schedules.id);
    const openSchedules = () => {
      app.shell.activateById(schedules.id);
      void schedules.refresh();
    };
    const alerts = new ScheduleAlerts({
      events: app.serviceManager.events ?? null,
      showJob: id => void openDetail(id),
      showSchedules: openSchedules,
      ...options
    });

    const kernels = () =>
      Object.values(app.serviceManager.kernelspecs.specs?.kernelspecs ?? {})
        .filter(spec => !!spec)
        .map(spec => ({ name: spec!.name, display: spec!.display_name }));
    // The notebook a command means: the one right-clicked in the file browser; from elsewhere,
    // the notebook in the main area, else the one selected in the file browser.
    const selectedNotebook = (): string | null => {
      const browser = browserFactory?.tracker.currentWidget;
      for (const item of browser?.selectedItems() ?? []) {
        if (item.type === 'notebook') {
          return item.path;
        }
      }
      return null;
    };
    const currentNotebook = (fromBrowser: boolean): string | null => {
      if (fromBrowser) {
        return selectedNotebook();
      }
      const widget = app.shell.currentWidget as unknown as {
        context?: { path?: string };
      } | null;
      const path = widget?.context?.path;
      return path && path.endsWith('.ipynb') ? path : selectedNotebook();
    };
    registerNotebookCommands({
      commands: app.commands,
      client,
      contents: app.serviceManager.contents,
      kernels,
      currentNotebook,
      addToMain: widget => {
        app.shell.add(widget, labShell ? 'main' : 'right', { rank: 600 });
        app.shell.activateById(widget.id);
      },
      openNotebook: path =>
        openNotebook
          ? openNotebook(path)
          : app.commands.execute('docmanager:open', { path }),
      submitted: result => {
        if (result.kind === 'job') {
          model.upsert(result.job);
          void openDetail(result.job.id);
        } else {
          openSchedules();
        }
      },
      openSchedules,
      ...options
    });
    app.contextMenu.addItem({
      command: NotebookCommandIDs.runAsJob,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      args: { fromBrowser: true },
      rank: 10
    });
    palette?.addItem({
      command: NotebookCommandIDs.runAsJob,
      category: trans.__('Jobs')
    });
    palette?.addItem({
      command: NotebookCommandIDs.newSchedule,
      category: trans.__('Jobs')
    });
    palette?.addItem({
      command: NotebookCommandIDs.openSchedules,
      category: trans.__('Jobs')
    });
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: widget => {
        // A NotebookPanel (a document widget): its toolbar and its file's context.
        const panel = widget as unknown as {
          toolbar: Toolbar;
          context: { path: string };
        };
        panel.toolbar.insertAfter(
          'cellType',
          'jupyter-jobs-run',
          new ToolbarButton({
            icon: jobsIcon,
            tooltip: trans.__('Run this notebook as a job…'),
            onClick: () =>
              void app.commands.execute(NotebookCommandIDs.runAsJob, {
                path: panel.context.path
              })
          })
        );
      }
    });

    const notifier = new JobNotifier({
      model,
      showJob: id => void openDetail(id),
      showAll: openPanel,
      announcedElsewhere: id => alerts.isScheduledRun(id),
      ...options
    });
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            notifier.enabled = alerts.enabled =
              settings.get('notifications').composite !== false;
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.error(
            'jupyter-jobs: could not load the settings; notifications stay on',
            reason
          );
        });
    }

    statusBar?.registerStatusItem('jupyter-jobs:status', {
      item: new JobsStatus({ model, onClick: openPanel, ...options }),
      align: 'left',
      rank: 5
    });
  }
};

/**
 * `%%job` outputs in notebooks (JupyterLab and Notebook 7): the widget while the kernel has its
 * model, otherwise the job as the server has it, or the state the output saved (renderer.tsx).
 * The renderer goes into each notebook's own rendermime, which is where ipywidgets binds its
 * renderer to the notebook's widget manager.
 */
const outputsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-jobs:outputs',
  description:
    'Shows %%job outputs whose widget model is gone (a reopened notebook) as the job itself.',
  autoStart: true,
  optional: [IRenderMimeRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry | null,
    translator: ITranslator | null
  ): void => {
    const client = new JobsClient({
      serverSettings: app.serviceManager.serverSettings
    });
    const watch = new JobWatch({
      client,
      events: app.serviceManager.events ?? null
    });
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: panel => {
        // A NotebookPanel: its rendermime is the notebook's clone of the global one.
        const notebook = (
          panel as unknown as { content: { rendermime?: IRenderMimeRegistry } }
        ).content;
        const own = notebook?.rendermime;
        if (!own) {
          return;
        }
        own.addFactory(
          jobRendererFactory({
            rendermime: own,
            // ipywidgets' placeholder stays in the global registry.
            widgetsReady: () =>
              widgetsBound(own, rendermime?.getFactory(WIDGET_MIME)),
            watch,
            client,
            commands: app.commands,
            translator
          }),
          RENDERER_RANK
        );
      }
    });
  }
};

export default [plugin, outputsPlugin];
