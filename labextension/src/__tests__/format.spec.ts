import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';

import {
  basename,
  elapsedSeconds,
  finishedCounts,
  formatDuration,
  notebookPath,
  progressFraction,
  progressLabel,
  statusText,
  statusWord,
  stripAnsi,
  userText
} from '../format';
import type { IJob } from '../types';
import { makeJob } from './fakes';

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [59.9, '59s'],
    [65, '1m 05s'],
    [3600 + 120, '1h 02m'],
    [86400 * 2 + 3600 * 3, '2d 3h'],
    [-5, '0s']
  ])('%p seconds -> %p', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});

describe('elapsedSeconds', () => {
  it('counts run time from the start, waiting time before it', () => {
    const waiting = makeJob(1, { created_at: 100 });
    expect(elapsedSeconds(waiting, 130)).toBe(30);
    const running = makeJob(2, { created_at: 100, started_at: 110 });
    expect(elapsedSeconds(running, 130)).toBe(20);
    const done = makeJob(3, {
      created_at: 100,
      started_at: 110,
      finished_at: 115
    });
    expect(elapsedSeconds(done, 999)).toBe(5);
  });
});

describe('progress', () => {
  it('has a fraction only with a positive total, clamped to 0..1', () => {
    expect(progressFraction(null)).toBeNull();
    expect(
      progressFraction({ done: 3, total: null, message: null })
    ).toBeNull();
    expect(progressFraction({ done: 3, total: 0, message: null })).toBeNull();
    expect(progressFraction({ done: 3, total: 4, message: null })).toBe(0.75);
    expect(progressFraction({ done: 9, total: 4, message: null })).toBe(1);
  });

  it('labels percent, counts and message', () => {
    expect(progressLabel({ done: 1, total: 4, message: 'epoch 1' })).toBe(
      '25% (1/4) · epoch 1'
    );
    expect(progressLabel({ done: 7, total: null, message: null })).toBe('7');
    expect(progressLabel(null)).toBe('');
  });
});

describe('notebookPath', () => {
  it('keeps relative notebook paths', () => {
    expect(notebookPath('work/analysis.ipynb', '/home/ana')).toBe(
      'work/analysis.ipynb'
    );
  });

  it('makes absolute paths under the server root relative', () => {
    expect(notebookPath('/home/ana/work/a.ipynb', '/home/ana')).toBe(
      'work/a.ipynb'
    );
    expect(notebookPath('/home/ana/work/a.ipynb', '/home/ana/')).toBe(
      'work/a.ipynb'
    );
    expect(notebookPath('/srv/a.ipynb', '/')).toBe('srv/a.ipynb');
    expect(notebookPath('C:\\Users\\ana\\a.ipynb', 'C:\\Users\\ana')).toBe(
      'a.ipynb'
    );
  });

  it('refuses owners that are not notebooks we can open', () => {
    expect(notebookPath('kernel:1234-abcd', '/home/ana')).toBeNull();
    expect(notebookPath('script.py', '/home/ana')).toBeNull();
    expect(notebookPath('', '/home/ana')).toBeNull();
    expect(notebookPath('/elsewhere/a.ipynb', '/home/ana')).toBeNull();
    expect(notebookPath('/home/anabel/a.ipynb', '/home/ana')).toBeNull();
    expect(notebookPath('/home/ana/a.ipynb', '')).toBeNull();
  });
});

describe('text helpers', () => {
  it('takes the last path segment', () => {
    expect(basename('work/deep/a.ipynb')).toBe('a.ipynb');
    expect(basename('a.ipynb')).toBe('a.ipynb');
  });

  it('strips terminal colours from tracebacks', () => {
    const colored =
      '\u001b[0;31mZeroDivisionError\u001b[0m Traceback (most recent call last)\n\u001b[1;32m----> 1\u001b[0m 1/0';
    expect(stripAnsi(colored)).toBe(
      'ZeroDivisionError Traceback (most recent call last)\n----> 1 1/0'
    );
  });
});

describe('userText', () => {
  it('names the user as people know them, with the username when it differs', () => {
    expect(userText({ user: 'alice', user_display_name: 'Alice L.' })).toBe(
      'Alice L. (alice)'
    );
    expect(userText({ user: 'root', user_display_name: 'root' })).toBe('root');
    expect(userText({ user: 'bob', user_display_name: '' })).toBe('bob');
    expect(userText({ user: '', user_display_name: '' })).toBeNull();
  });
});

describe('finishedCounts', () => {
  it('adds the finished statuses only, in the order of a job life', () => {
    expect(
      finishedCounts({ cancelled: 1, running: 4, failed: 2, queued: 3 })
    ).toEqual({
      total: 3,
      parts: [
        ['failed', 2],
        ['cancelled', 1]
      ]
    });
    expect(finishedCounts({ pending: 2, succeeded: 0 })).toEqual({
      total: 0,
      parts: []
    });
  });
});

describe('status words', () => {
  const trans = nullTranslator.load('jupyter_jobs');

  it('say why, as the widget and the CLI do', () => {
    const job = (fields: Partial<IJob>) => makeJob(1, fields);
    expect(
      statusText(job({ status: 'failed', reason: 'timeout' }), trans)
    ).toBe('failed (timeout)');
    expect(
      statusText(job({ status: 'running', cancel_requested: true }), trans)
    ).toBe('running (cancelling)');
    expect(
      statusText(job({ status: 'queued', cancel_requested: true }), trans)
    ).toBe('queued (cancelling)');
    expect(statusText(job({ status: 'running', attempt: 2 }), trans)).toBe(
      'running, attempt 2'
    );
    expect(
      statusText(job({ status: 'failed', reason: 'worker_lost' }), trans)
    ).toBe('failed (worker lost)');
  });

  it('go through the translator', () => {
    const upper = {
      __: (text: string, ...args: unknown[]) =>
        args
          .reduce<string>(
            (out, arg, i) => out.replace(`%${i + 1}`, String(arg)),
            text
          )
          .toUpperCase()
    } as unknown as TranslationBundle;
    expect(statusWord('cancelled', upper)).toBe('CANCELLED');
    expect(
      statusText(makeJob(1, { status: 'failed', reason: 'error' }), upper)
    ).toBe('FAILED (ERROR)');
  });
});
