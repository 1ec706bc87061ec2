import {
  IRenderMime,
  MimeModel,
  RenderMimeRegistry,
  standardRendererFactories
} from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import {
  JOB_MIME,
  jobRendererFactory,
  JobOutputRenderer,
  JobWatch,
  parseJobRef,
  RENDERER_RANK,
  WIDGET_MIME,
  widgetsBound
} from '../renderer';
import { EVENT_SCHEMA_ID } from '../types';
import { FakeApi, FakeEvents, makeJob, waitFor } from './fakes';

/* eslint-disable jupyter/no-untranslated-string -- ipywidgets' own (untranslated) messages */

/** What ipywidgets' renderer does: a view when the model exists, else its message. */
class FakeWidgetRenderer extends Panel implements IRenderMime.IRenderer {
  constructor(private _widgets: FakeWidgets) {
    super();
    _widgets.renderers.push(this);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const { model_id } = model.data[WIDGET_MIME] as { model_id: string };
    this._modelId = model_id;
    this.node.textContent = 'Loading widget...';
    if (!this._widgets.restored) {
      return; // rendered again once the manager is restored
    }
    this.reveal(model_id);
  }

  reveal(modelId = this._modelId): void {
    if (this._widgets.models.has(modelId)) {
      this.node.textContent = '';
      const view = new Widget();
      view.addClass('fake-widget-view');
      view.node.textContent = `widget ${modelId}`;
      this.addWidget(view);
    } else {
      this.node.textContent = 'Error displaying widget: model not found';
    }
  }

  private _modelId = '';
}

/** ipywidgets in a notebook: its models, and whether the manager restored them yet. */
class FakeWidgets {
  models = new Set<string>();
  restored = true;
  renderers: FakeWidgetRenderer[] = [];
  placeholder: IRenderMime.IRendererFactory = {
    safe: false,
    mimeTypes: [WIDGET_MIME],
    createRenderer: () => {
      throw new Error('the placeholder renders nothing in these tests');
    }
  };
  bound: IRenderMime.IRendererFactory = {
    safe: false,
    mimeTypes: [WIDGET_MIME],
    createRenderer: () => new FakeWidgetRenderer(this)
  };

  restore(): void {
    this.restored = true;
    this.renderers.forEach(r => r.reveal());
  }
}

const SAVED_HTML =
  '<div class="jupyter-jobs-job"><b>fit</b> running #7 · 3.0 s elapsed</div>';

function bundle(
  fields: { modelId?: string; created_at?: number; name?: string } = {}
) {
  return {
    [JOB_MIME]: {
      id: 7,
      name: fields.name ?? 'fit',
      created_at: fields.created_at ?? 1_700_000_007
    },
    [WIDGET_MIME]: {
      version_major: 2,
      version_minor: 0,
      model_id: fields.modelId ?? 'abc'
    },
    'text/html': SAVED_HTML,
    'text/plain': 'fit running #7'
  };
}

function setup(options: { bound?: boolean; interval?: number } = {}) {
  const api = new FakeApi();
  const widgets = new FakeWidgets();
  const events = new FakeEvents();
  const rendermime = new RenderMimeRegistry({
    initialFactories: standardRendererFactories
  });
  rendermime.addFactory(
    options.bound === false ? widgets.placeholder : widgets.bound,
    -10
  );
  const watch = new JobWatch({
    client: api.asClient(),
    events: events as any,
    interval: options.interval ?? 50,
    delay: 5
  });
  const factory = jobRendererFactory({
    rendermime,
    widgetsReady: () => widgetsBound(rendermime, widgets.placeholder, 5000, 10),
    watch,
    client: api.asClient()
  });
  rendermime.addFactory(factory, RENDERER_RANK);
  const render = async (data = bundle(), trusted = true) => {
    const mimeType = rendermime.preferredMimeType(data, 'any')!;
    const renderer = rendermime.createRenderer(mimeType) as JobOutputRenderer;
    Widget.attach(renderer, document.body);
    await renderer.renderModel(new MimeModel({ data, trusted }));
    return renderer;
  };
  return { api, widgets, events, rendermime, watch, render };
}

let cleanup: (() => void)[] = [];
afterEach(() => {
  cleanup.forEach(f => f());
  cleanup = [];
  document.body.innerHTML = '';
});

function track<T extends ReturnType<typeof setup>>(env: T): T {
  cleanup.push(() => env.watch.dispose());
  return env;
}

const visibleText = (renderer: Widget) =>
  [...renderer.node.children]
    .filter(child => !child.classList.contains('lm-mod-hidden'))
    .map(child => child.textContent)
    .join('');

describe('parseJobRef', () => {
  it('reads the job a display names, and nothing else', () => {
    expect(parseJobRef({ id: 3, name: 'x', created_at: 1.5 })).toEqual({
      id: 3,
      name: 'x',
      created_at: 1.5
    });
    expect(parseJobRef({ id: '3', name: 'x', created_at: 1 })).toBeNull();
    expect(parseJobRef(null)).toBeNull();
  });
});

describe('JobOutputRenderer', () => {
  it('is preferred over the widget view for a job display', () => {
    const { rendermime } = track(setup());
    expect(rendermime.preferredMimeType(bundle(), 'any')).toBe(JOB_MIME);
  });

  it('shows the live widget while its model exists', async () => {
    const { widgets, render, api } = track(setup());
    widgets.models.add('abc');
    api.add(makeJob(7, { name: 'fit', status: 'running' }));
    const renderer = await render();
    expect(renderer.shown).toBe('widget');
    expect(visibleText(renderer)).toBe('widget abc');
    // News of the job from the server does not replace the widget.
    await waitFor(() => api.calls.includes('status 7'));
    await new Promise(resolve => setTimeout(resolve, 20));
    expect(renderer.shown).toBe('widget');
  });

  it('shows the job from the server, not "model not found", when the model is gone', async () => {
    const { render, api } = track(setup());
    api.add(
      makeJob(7, {
        name: 'fit',
        status: 'succeeded',
        started_at: 1_700_000_010,
        finished_at: 1_700_000_014,
        has_outputs: true
      })
    );
    api.outputsOf.set(7, [
      { output_type: 'stream', name: 'stdout', text: 'hello from the job\n' }
    ]);
    const renderer = await render();
    await waitFor(() => renderer.shown === 'live');
    await waitFor(() => visibleText(renderer).includes('hello from the job'));
    await waitFor(() => visibleText(renderer).includes('took 4s'));
    const text = visibleText(renderer);
    expect(text).toContain('fit');
    expect(text).toContain('succeeded');
    expect(text).toContain('#7 · took 4s');
    expect(text).toContain('%job attach 7');
    expect(visibleText(renderer)).not.toContain('model not found');
  });

  it('shows a failed job with its traceback', async () => {
    const { render, api } = track(setup());
    api.add(
      makeJob(7, {
        name: 'fit',
        status: 'failed',
        reason: 'error',
        finished_at: 1_700_000_020,
        error: {
          type: 'ValueError',
          message: 'bad input',
          traceback: 'Traceback (most recent call last):\nValueError: bad input'
        }
      })
    );
    const renderer = await render();
    await waitFor(() =>
      visibleText(renderer).includes('ValueError: bad input')
    );
    await waitFor(() => visibleText(renderer).includes('failed (error)'));
  });

  it('shows the saved state when the server does not know the job', async () => {
    const { render, api } = track(setup());
    const renderer = await render();
    await waitFor(() => api.calls.includes('status 7'));
    await waitFor(() => renderer.shown === 'saved');
    const text = visibleText(renderer);
    expect(text).toContain('fit running #7 · 3.0 s elapsed');
    expect(text).toContain('the jobs server does not know this job');
    expect(visibleText(renderer)).not.toContain('model not found');
  });

  it('does not take another server’s job with the same id for it', async () => {
    const { render, api } = track(setup());
    api.add(makeJob(7, { name: 'fit', created_at: 1_800_000_000 }));
    const renderer = await render();
    await waitFor(() => api.calls.includes('status 7'));
    await waitFor(() => renderer.shown === 'saved');
  });

  it('shows the saved state while the server cannot be reached', async () => {
    const { render, api } = track(setup());
    const spy = jest
      .spyOn(console, 'error')
      .mockImplementation(() => undefined);
    api.failing.status = new Error('502 Bad Gateway');
    const renderer = await render();
    await waitFor(() => visibleText(renderer).includes('cannot reach'));
    expect(renderer.shown).toBe('saved');
    expect(visibleText(renderer)).toContain('502 Bad Gateway');
    // Back: the job shows as the server has it.
    api.failing.status = undefined;
    api.add(makeJob(7, { name: 'fit', status: 'running' }));
    await waitFor(() => renderer.shown === 'live');
    spy.mockRestore();
  });

  it('follows the job as it runs on, through events', async () => {
    // No polling to speak of: only the event may bring the news.
    const env = track(setup({ interval: 600_000 }));
    env.api.add(makeJob(7, { name: 'fit', status: 'running', started_at: 1 }));
    const renderer = await env.render();
    await waitFor(() => renderer.shown === 'live');
    await waitFor(() => visibleText(renderer).includes('elapsed'));
    env.api.set(7, { status: 'succeeded', finished_at: 5, has_outputs: true });
    env.api.outputsOf.set(7, [
      {
        output_type: 'display_data',
        data: { 'text/plain': 'the answer is 42' },
        metadata: {}
      }
    ]);
    env.events.stream.emit({
      schema_id: EVENT_SCHEMA_ID,
      jobs: [
        {
          action: 'transition',
          id: 7,
          name: 'fit',
          owner: '',
          status: 'succeeded',
          previous: 'running',
          reason: null,
          attempt: 1,
          progress: null,
          actions: ['delete']
        }
      ]
    });
    await waitFor(() => visibleText(renderer).includes('the answer is 42'));
    await waitFor(() => visibleText(renderer).includes('succeeded'));
  });

  it('comes back to life when ipywidgets restores the model later', async () => {
    const { widgets, render, api } = track(setup());
    widgets.restored = false; // a reloaded page: the manager asks the kernel for its models
    widgets.models.add('abc');
    api.add(makeJob(7, { name: 'fit', status: 'running' }));
    const renderer = await render();
    await waitFor(() => renderer.shown === 'live');
    expect(visibleText(renderer)).not.toContain('Loading widget');
    widgets.restore();
    await waitFor(() => renderer.shown === 'widget');
    expect(visibleText(renderer)).toBe('widget abc');
  });

  it('waits for ipywidgets to bind the notebook’s renderer', async () => {
    const { widgets, render, rendermime, api } = track(setup({ bound: false }));
    widgets.models.add('abc');
    api.add(makeJob(7, { name: 'fit', status: 'running' }));
    const renderer = await render();
    await waitFor(() => renderer.shown === 'live');
    rendermime.removeMimeType(WIDGET_MIME);
    rendermime.addFactory(widgets.bound, -10);
    await waitFor(() => renderer.shown === 'widget');
  });

  it('never asks ipywidgets for an untrusted output, and sanitizes the saved state', async () => {
    const { widgets, render, api } = track(setup());
    widgets.models.add('abc');
    const data = bundle();
    data['text/html'] = '<b>fit</b><img src=x onerror="window.__pwned = 1">';
    const renderer = await render(data, false);
    await waitFor(() => api.calls.includes('status 7'));
    await waitFor(() => renderer.shown === 'saved');
    expect(widgets.renderers).toHaveLength(0);
    expect(renderer.node.innerHTML).not.toContain('onerror');
  });
});

describe('JobWatch', () => {
  it('reads all the shown jobs in one request, and only active ones again', async () => {
    const api = new FakeApi();
    api.add(
      makeJob(1, { status: 'running' }),
      makeJob(2, { status: 'succeeded' })
    );
    const watch = new JobWatch({
      client: api.asClient(),
      interval: 20,
      delay: 5
    });
    cleanup.push(() => watch.dispose());
    const seen: string[] = [];
    for (const id of [1, 2, 3]) {
      watch.watch(id, news =>
        seen.push(`${id}:${news.job ? news.job.status : 'missing'}`)
      );
    }
    await waitFor(() => seen.length >= 3);
    expect(api.calls[0]).toBe('status 1,2,3');
    expect(seen.slice(0, 3).sort()).toEqual([
      '1:running',
      '2:succeeded',
      '3:missing'
    ]);
    api.set(1, { status: 'succeeded' });
    await waitFor(() => seen.includes('1:succeeded'));
    expect(api.calls.filter(c => c.startsWith('status')).slice(1)).toContain(
      'status 1'
    );
    expect(api.calls.some(c => c.startsWith('status') && c.includes('2'))).toBe(
      api.calls[0].includes('2')
    );
  });
});
