import { MessageLoop } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { JobsModel } from '../model';
import { JobsStatus } from '../statusbar';
import { FakeApi, makeJob } from './fakes';

describe('JobsStatus', () => {
  it('is a button the keyboard reaches and presses with Enter or Space', async () => {
    const api = new FakeApi();
    api.add(makeJob(1, { status: 'running' }), makeJob(2));
    const model = new JobsModel({ client: api.asClient(), fetchDelay: 10_000 });
    await model.refresh();
    let opened = 0;
    const item = new JobsStatus({ model, onClick: () => void opened++ });
    Widget.attach(item, document.body);
    MessageLoop.sendMessage(item, Widget.Msg.UpdateRequest);
    expect(item.node.tabIndex).toBe(0);
    expect(item.node.getAttribute('role')).toBe('button');
    expect(item.node.getAttribute('aria-label')).toBe(
      'Background jobs: 1 running · 1 queued. Show the Jobs panel'
    );
    for (const key of ['Enter', ' ', 'a']) {
      item.node.dispatchEvent(new KeyboardEvent('keydown', { key }));
    }
    expect(opened).toBe(2);
    item.dispose();
  });
});
