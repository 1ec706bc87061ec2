/**
 * A job type's parameters as a form (typeForm.tsx): the errors the server names put under
 * their paths, a schema without the parameters the caller fills, the marks of required
 * parameters, what `TypedParameters` chooses, fills, checks and sends, and the generated form
 * as JupyterLab renders it (a control of each JSON type, required ones marked).
 */

import { ReactWidget } from '@jupyterlab/apputils';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { JobsClient } from '../client';
import {
  errorSchemaOf,
  formSchema,
  requiredMarks,
  TypedParameters,
  TypedParametersFields
} from '../typeForm';
import type { IJobType } from '../types';
import { makeJobType, rendered, REPORT_TYPE, TRAIN_TYPE } from './fakes';

const REPORT = REPORT_TYPE;
const BROKEN = makeJobType('broken', { error: 'cannot be imported' });

/** A client whose `types()` lists `types` (or fails with `error`). */
function typesClient(types: IJobType[], error?: Error): JobsClient {
  return {
    types: async () => {
      if (error) {
        throw error;
      }
      return types;
    }
  } as unknown as JobsClient;
}

afterEach(() => {
  document.body.innerHTML = '';
});

describe('errorSchemaOf', () => {
  it('puts each parameter the server names under its path', () => {
    const detail = {
      type: 'train',
      parameters: {
        'parameters.epochs': '0 is less than the minimum of 1',
        'parameters.data.path': 'is required',
        'parameters.items[0]': 'bad',
        'parameters["odd key"]': 'odd',
        parameters: 'not an object'
      }
    };
    expect(errorSchemaOf(detail)).toEqual({
      __errors: ['not an object'],
      epochs: { __errors: ['0 is less than the minimum of 1'] },
      data: { path: { __errors: ['is required'] } },
      items: { 0: { __errors: ['bad'] } },
      'odd key': { __errors: ['odd'] }
    });
    expect(errorSchemaOf(null)).toEqual({});
    expect(errorSchemaOf({ id: 3 })).toEqual({});
  });
});

describe('formSchema and requiredMarks', () => {
  it('leaves out the parameters the caller fills, required or not', () => {
    const shown = formSchema(REPORT.schema, ['scheduled_time', 'none']);
    expect(Object.keys(shown.properties!)).toEqual([
      'region',
      'days',
      'rate',
      'draft'
    ]);
    expect(shown.required).toEqual(['region', 'days']);
    expect(shown.additionalProperties).toBe(false);
    expect(REPORT.schema.required).toContain('scheduled_time'); // a copy
    expect(formSchema(REPORT.schema, [])).toBe(REPORT.schema);
    expect(formSchema({ type: 'object' }, ['x'])).toEqual({ type: 'object' });
  });

  it('marks each required parameter by its title, else its name', () => {
    expect(
      requiredMarks(formSchema(REPORT.schema, ['scheduled_time']))
    ).toEqual({
      region: { 'ui:title': 'Region *' },
      days: { 'ui:title': 'days *' }
    });
    expect(requiredMarks({ type: 'object' })).toEqual({});
  });
});

describe('TypedParameters', () => {
  it('chooses the first type that loads, its defaults filled in', async () => {
    const model = new TypedParameters();
    await model.load(typesClient([BROKEN, REPORT, TRAIN_TYPE]));
    expect(model.chosen).toBe('report');
    expect(model.parameters).toEqual({ days: 7, rate: 0.5, draft: false });
    model.choose('train');
    expect(model.type).toBe(TRAIN_TYPE);
    expect(model.parameters).toEqual({ epochs: 3, model: 'linear' });
    expect(model.declares('epochs') && !model.declares('region')).toBe(true);
  });

  it('keeps the type and parameters it was given (a schedule to edit)', async () => {
    const model = new TypedParameters();
    model.chosen = 'report';
    model.parameters = { region: 'EU', days: 2 };
    await model.load(typesClient([TRAIN_TYPE, REPORT]));
    expect(model.chosen).toBe('report');
    expect(model.parameters).toEqual({
      region: 'EU',
      days: 2,
      rate: 0.5,
      draft: false
    });
  });

  it('checks what it sends, without the parameters the caller fills', async () => {
    const model = new TypedParameters();
    await model.load(typesClient([REPORT]));
    model.omitted = ['scheduled_time'];
    model.parameters = { ...model.parameters, days: 0, scheduled_time: 'x' };
    expect(model.check()).toBe(false);
    expect(Object.keys(model.extraErrors).sort()).toEqual(['days', 'region']);
    model.parameters = { ...model.parameters, days: 3, region: 'EU' };
    expect(model.check()).toBe(true);
    expect(model.values()).toEqual({
      region: 'EU',
      days: 3,
      rate: 0.5,
      draft: false
    });
    model.omitted = []; // run now: the time is the user's to give
    expect(model.check()).toBe(true);
    expect(model.values().scheduled_time).toBe('x');
  });

  it("shows the parameters a server's 400 names, and says whether it named any", async () => {
    const model = new TypedParameters();
    await model.load(typesClient([REPORT]));
    const detail = { parameters: { 'parameters.days': 'too many' } };
    expect(model.showServerErrors(detail)).toBe(true);
    expect(model.extraErrors).toEqual({ days: { __errors: ['too many'] } });
    expect(model.showServerErrors(null)).toBe(false);
    expect(model.extraErrors).toEqual({});
  });

  it('says why it has no types when they cannot be read', async () => {
    const model = new TypedParameters();
    await model.load(typesClient([], new Error('Forbidden')));
    expect([model.types, model.loadError, model.type]).toEqual([
      [],
      'Forbidden',
      null
    ]);
  });
});

describe('TypedParametersFields', () => {
  it('renders a control per JSON type, required parameters marked', async () => {
    const model = new TypedParameters();
    await model.load(typesClient([BROKEN, REPORT]));
    model.omitted = ['scheduled_time'];
    const trans = nullTranslator.load('jupyter_jobs');
    let changes = 0;
    const widget = ReactWidget.create(
      <TypedParametersFields
        model={model}
        trans={trans}
        changed={() => void changes++}
        idPrefix="t"
      />
    );
    Widget.attach(widget, document.body);
    await rendered(widget);
    const node = widget.node;
    const input = (name: string) =>
      node.querySelector<HTMLInputElement>(`#t_${name}`)!;
    expect([input('region').type, input('region').required]).toEqual([
      'text',
      true
    ]);
    expect([input('days').type, input('days').value]).toEqual(['number', '7']);
    expect(input('rate').type).toBe('number');
    expect([input('draft').type, input('draft').checked]).toEqual([
      'checkbox',
      false
    ]);
    expect(node.querySelector('#t_scheduled_time')).toBeNull(); // omitted
    const labels = [...node.querySelectorAll('.jp-FormGroup-fieldLabel')].map(
      label => label.textContent
    );
    expect(labels).toEqual(['Region *', 'days *', 'rate']);
    expect(node.textContent).toContain('draft');
    expect(node.textContent).not.toContain('draft *');
    expect(node.querySelector('form')).toBeNull(); // a div: it may sit in a form
    const select = node.querySelector<HTMLSelectElement>(
      'select[name="type"]'
    )!;
    expect([...select.options].map(o => [o.value, o.disabled])).toEqual([
      ['broken', true],
      ['report', false]
    ]);
    expect(changes).toBe(0);
  });
});
