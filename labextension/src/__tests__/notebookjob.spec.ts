import { MainAreaWidget, Notification } from '@jupyterlab/apputils';
import type { Contents } from '@jupyterlab/services';
import { CommandRegistry } from '@lumino/commands';

import { JobsClient } from '../client';
import {
  copyPath,
  NotebookCommandIDs,
  NotebookResult,
  registerNotebookCommands
} from '../notebookjob';
import { makeJob } from './fakes';

const EXECUTED = {
  cells: [],
  metadata: {},
  nbformat: 4,
  nbformat_minor: 5
};

function setup() {
  const saved: [string, Partial<Contents.IModel>][] = [];
  const opened: string[] = [];
  const added: MainAreaWidget[] = [];
  const client = {
    get: async (id: number) =>
      makeJob(id, {
        name: 'nightly',
        options: { notebook: { path: 'work/report.ipynb' } }
      }),
    notebook: async () => EXECUTED,
    notebookHtml: async (id: number) =>
      id === 404
        ? Promise.reject(new Error('no notebook yet'))
        : '<p>bonjour from the job</p><script>window.__ran = 1</script>'
  } as unknown as JobsClient;
  const contents = {
    save: async (path: string, model: Partial<Contents.IModel>) => {
      saved.push([path, model]);
      return model;
    }
  } as unknown as Contents.IManager;
  const commands = new CommandRegistry();
  registerNotebookCommands({
    commands,
    client,
    contents,
    kernels: () => [],
    currentNotebook: () => null,
    addToMain: widget => void added.push(widget),
    openNotebook: async path => void opened.push(path),
    submitted: () => undefined,
    openSchedules: () => undefined
  });
  return { commands, saved, opened, added };
}

describe('notebook job commands', () => {
  it('names the copy after the source notebook and the job', () => {
    expect(copyPath('work/report.ipynb', 'x', 12)).toBe(
      'work/report-job12.ipynb'
    );
    expect(copyPath('report.ipynb', 'x', 1)).toBe('report-job1.ipynb');
    expect(copyPath(null, 'a/b', 3)).toBe('a_b-job3.ipynb');
    expect(copyPath('/home/ana/r.ipynb', 'x', 4)).toBe('r-job4.ipynb');
    expect(copyPath('C:\\work\\r.ipynb', 'x', 5)).toBe('r-job5.ipynb');
  });

  it('saves a copy of the result beside the source and opens it', async () => {
    const { commands, saved, opened } = setup();
    const path = await commands.execute(NotebookCommandIDs.saveResult, {
      id: 7
    });
    expect(path).toBe('work/report-job7.ipynb');
    expect(saved).toEqual([
      [
        'work/report-job7.ipynb',
        { type: 'notebook', format: 'json', content: EXECUTED }
      ]
    ]);
    expect(opened).toEqual(['work/report-job7.ipynb']);
  });

  it('opens the result in an iframe sandboxed with no permissions', async () => {
    const { commands, added } = setup();
    await commands.execute(NotebookCommandIDs.openResult, { id: 7 });
    expect(added).toHaveLength(1);
    expect(added[0].id).toBe('jupyter-jobs-result-7');
    const content = added[0].content as NotebookResult;
    expect(content.jobId).toBe(7);
    const frame = content.node.querySelector('iframe')!;
    expect(frame.getAttribute('sandbox')).toBe('');
    expect(frame.srcdoc).toContain('bonjour from the job');
    added[0].dispose();
  });

  it('adds nothing when the result cannot be read', async () => {
    const { commands, added } = setup();
    await commands.execute(NotebookCommandIDs.openResult, { id: 404 });
    expect(added).toEqual([]);
    document.body.innerHTML = '';
  });

  it('says what to do when no notebook is open or selected', async () => {
    const { commands } = setup();
    await commands.execute(NotebookCommandIDs.runAsJob, {});
    const notes = Notification.manager.notifications;
    expect(notes.map(n => n.type)).toEqual(['warning']);
    expect(notes[0].message).toContain('select one in the file browser');
    Notification.dismiss();
  });
});
