import { Widget } from '@lumino/widgets';

import { LogView } from '../detail';

const EVIL = '<img src=x onerror="window.__pwned = 1">';

afterEach(() => {
  document.body.innerHTML = '';
});

function setup(): { log: LogView; select: HTMLSelectElement } {
  const log = new LogView();
  Widget.attach(log, document.body);
  const select = log.node.querySelector<HTMLSelectElement>(
    '.jp-JobDetail-streamSelect'
  )!;
  return { log, select };
}

describe('LogView streams', () => {
  it('offers a stream selector only once the log has more than its main stream', () => {
    const { log, select } = setup();
    log.setStreams([{ name: 'main', size: 10 }]);
    expect(select.hidden).toBe(true);
    log.setStreams([
      { name: 'main', size: 12 },
      { name: 'thread worker-1', size: 4 }
    ]);
    expect(select.hidden).toBe(false);
    expect([...select.options].map(o => o.value)).toEqual([
      '',
      'main',
      'thread worker-1'
    ]);
    expect(log.stream).toBeNull(); // "All" by default
    expect(log.sizeOf('thread worker-1')).toBe(4);
  });

  it('tags each line of a labelled stream in the all view, as text', () => {
    const { log } = setup();
    log.appendParts([
      { stream: 'main', data: 'started\n' },
      { stream: 'pid 42', data: 'one\ntw' },
      { stream: 'main', data: 'more\n' },
      { stream: 'pid 42', data: 'o\n' },
      { stream: EVIL, data: 'x\n' }
    ]);
    const tags = [...log.node.querySelectorAll('.jp-JobDetail-logTag')].map(
      t => t.textContent
    );
    // "tw" + "o" is one line of pid 42: it gets one tag
    expect(tags).toEqual(['pid 42 │ ', 'pid 42 │ ', `${EVIL} │ `]);
    expect(log.text).toBe(
      `started\npid 42 │ one\npid 42 │ twmore\no\n${EVIL} │ x\n`
    );
    expect(log.node.querySelector('img')).toBeNull();
    const parts = log.node.querySelectorAll<HTMLElement>(
      '.jp-JobDetail-logPart'
    );
    expect([...parts].map(p => p.dataset.stream)).toEqual([
      'pid 42',
      'pid 42',
      EVIL
    ]);
  });

  it('tells its owner when another stream is chosen', () => {
    const { log, select } = setup();
    const changes: (string | null)[] = [];
    log.streamChanged = () => changes.push(log.stream);
    log.setStreams([
      { name: 'main', size: 1 },
      { name: 'thread a', size: 1 }
    ]);
    select.value = 'thread a';
    select.dispatchEvent(new Event('change'));
    select.value = '';
    select.dispatchEvent(new Event('change'));
    expect(changes).toEqual(['thread a', null]);
  });
});
