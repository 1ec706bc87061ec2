/**
 * A job type's parameters as a form: the type, chosen among those the server knows, and a form
 * generated from the JSON schema of its parameters. The "New job" dialog (typeDialog.tsx) and
 * the "Run as job" dialog's job-type target (runDialog.tsx, where schedules are made) share it.
 *
 * The form is JupyterLab's own `FormComponent` (React JSON Schema Form, as the settings editor
 * uses), validating with ajv as the user types: defaults prefilled, a control per JSON type
 * (numbers, checkboxes, text, choices), required parameters marked with an asterisk (JupyterLab's
 * field template shows no mark of its own). The server checks the parameters again with
 * `jsonschema`; a 400 names each bad parameter by its path (`parameters.epochs`), which the
 * form shows beside that field. Loaded on first use (ajv included).
 */

import { TranslationBundle } from '@jupyterlab/translation';
import { FormComponent } from '@jupyterlab/ui-components';
import type { ReadonlyJSONObject } from '@lumino/coreutils';
import { getDefaultFormState } from '@rjsf/utils';
import type { ErrorSchema, RJSFSchema, UiSchema } from '@rjsf/utils';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- this module is itself loaded with import()
import { customizeValidator } from '@rjsf/validator-ajv8';
import * as React from 'react';

import { JobsClient } from './client';
import type { IJobType } from './types';

/** ajv (draft 7, with formats), for the form and the check before a request. */
export const validator = customizeValidator<ReadonlyJSONObject>();

/** The paths the server names bad parameters by (`parameters.data.path`), as rjsf's errors. */
export function errorSchemaOf(detail: unknown): ErrorSchema {
  const problems =
    detail && typeof detail === 'object'
      ? (detail as { parameters?: unknown }).parameters
      : null;
  const schema: ErrorSchema = {};
  if (!problems || typeof problems !== 'object') {
    return schema;
  }
  for (const [path, why] of Object.entries(problems)) {
    const keys = path
      .replace(/^parameters/, '')
      .split(/\.|\[|\]/)
      .filter(key => key !== '')
      .map(key => key.replace(/^"(.*)"$/, '$1'));
    let node = schema as Record<string, any>;
    for (const key of keys) {
      node = node[key] = node[key] ?? {};
    }
    node.__errors = [...(node.__errors ?? []), String(why)];
  }
  return schema;
}

/**
 * The schema a form shows: the type's, without the parameters in `omitted` (those the caller
 * fills itself, as a schedule fills `scheduled_time` for each run), in its properties and
 * among the required ones.
 */
export function formSchema(
  schema: IJobType['schema'],
  omitted: readonly string[] = []
): RJSFSchema {
  const whole = schema as RJSFSchema;
  const properties = whole.properties;
  if (!properties || !omitted.some(name => name in properties)) {
    return whole;
  }
  const shown: RJSFSchema = {
    ...whole,
    properties: without(properties, omitted)
  };
  if (whole.required) {
    shown.required = whole.required.filter(name => !omitted.includes(name));
  }
  return shown;
}

/**
 * A uiSchema whose titles mark each required parameter of `schema` (its own title, else its
 * name, then " *"); the inputs carry `required` too, for assistive technologies.
 */
export function requiredMarks(
  schema: RJSFSchema
): UiSchema<ReadonlyJSONObject> {
  const marks: UiSchema<ReadonlyJSONObject> = {};
  const properties = schema.properties ?? {};
  for (const name of schema.required ?? []) {
    const property = properties[name];
    const title =
      property && typeof property === 'object' && property.title
        ? property.title
        : name;
    marks[name] = { 'ui:title': `${title} *` };
  }
  return marks;
}

/** `object` without the keys in `names`. */
function without<T>(
  object: { readonly [key: string]: T },
  names: readonly string[]
): { [key: string]: T } {
  const kept: { [key: string]: T } = {};
  for (const [key, value] of Object.entries(object)) {
    if (!names.includes(key)) {
      kept[key] = value;
    }
  }
  return kept;
}

/**
 * What a job-type form holds: the types the server knows, the one chosen, its parameters as
 * filled in and the errors shown by their fields. Plain state: the widget that shows it
 * renders again after `load` and `choose`.
 */
export class TypedParameters {
  /** The job types, once read (null before). */
  types: IJobType[] | null = null;
  /** Why the types could not be read ('' when they were). */
  loadError = '';
  /** The chosen type's name. */
  chosen = '';
  /** The parameters as filled in. */
  parameters: ReadonlyJSONObject = {};
  /** Errors by parameter: from the check before a request, or from the server's 400. */
  extraErrors: ErrorSchema = {};
  /** Parameters the form neither shows nor sends (the caller fills them). */
  omitted: readonly string[] = [];

  /**
   * Read the job types (`GET /jobs/api/types`, as the panel's type filter does). The type
   * chosen before (a schedule being edited) keeps its parameters; else the first that can
   * run is chosen.
   */
  async load(client: JobsClient): Promise<void> {
    try {
      this.types = await client.types();
      this.loadError = '';
    } catch (error) {
      this.types = [];
      this.loadError = (error as Error).message;
    }
    if (this.chosen) {
      this.choose(this.chosen, this.parameters);
    } else {
      this.choose(this.types.find(type => !type.error)?.name ?? '');
    }
  }

  /** Choose a type: its form starts from `given` and the schema's defaults. */
  choose(name: string, given: ReadonlyJSONObject = {}): void {
    this.chosen = name;
    const type = this.type;
    const filled = type
      ? getDefaultFormState(validator, type.schema as RJSFSchema, given)
      : given;
    // The schema is an object's (the server refuses others): so are its defaults.
    this.parameters = (filled ?? {}) as ReadonlyJSONObject;
    this.extraErrors = {};
  }

  /** The chosen type, or null (none chosen, or one the server no longer knows). */
  get type(): IJobType | null {
    return this.types?.find(type => type.name === this.chosen) ?? null;
  }

  /** The schema the form shows: the chosen type's, without the omitted parameters. */
  get schema(): RJSFSchema {
    return formSchema(this.type?.schema ?? { type: 'object' }, this.omitted);
  }

  /** Whether the chosen type takes `name` (its schema lists it). */
  declares(name: string): boolean {
    const properties = (this.type?.schema as RJSFSchema | undefined)
      ?.properties;
    return !!properties && name in properties;
  }

  /** The parameters to send: those filled in, but the omitted ones. */
  values(): ReadonlyJSONObject {
    return without(this.parameters, this.omitted);
  }

  /** Check the parameters against the schema; false (and errors by field) when they fail. */
  check(): boolean {
    const checked = validator.validateFormData(this.values(), this.schema);
    this.extraErrors = checked.errorSchema as ErrorSchema;
    return checked.errors.length === 0;
  }

  /** Show the parameters a server error names (its `detail`); whether it named any. */
  showServerErrors(detail: unknown): boolean {
    this.extraErrors = errorSchemaOf(detail);
    return Object.keys(this.extraErrors).length > 0;
  }
}

/**
 * The type's choice and its generated form. `changed` is called after another type is chosen
 * (the owner renders again); values typed into the form go to `model.parameters` as they come.
 */
export function TypedParametersFields(props: {
  model: TypedParameters;
  trans: TranslationBundle;
  changed: () => void;
  /** The prefix of the generated controls' ids (`<prefix>_<parameter>`). */
  idPrefix: string;
}): JSX.Element {
  const { model, trans } = props;
  const types = model.types ?? [];
  const type = model.type;
  const schema = model.schema;
  return (
    <>
      <label className="jp-JobsRunForm-field">
        <span>{trans.__('Job type')}</span>
        <select
          className="jp-mod-styled"
          name="type"
          value={model.chosen}
          onChange={event => {
            model.choose(event.target.value);
            props.changed();
          }}
        >
          {!type && <option value={model.chosen}>{model.chosen}</option>}
          {types.map(t => (
            <option
              key={t.name}
              value={t.name}
              disabled={!!t.error}
              title={t.error ?? t.description}
            >
              {t.error ? trans.__('%1 (cannot be loaded)', t.name) : t.name}
            </option>
          ))}
        </select>
      </label>
      {type?.description && (
        <div className="jp-JobsTypeForm-description">{type.description}</div>
      )}
      {type && (
        <div className="jp-JobsTypeForm-parameters">
          <FormComponent
            key={`${type.name} ${model.omitted.join(' ')}`}
            tagName="div"
            schema={schema}
            uiSchema={requiredMarks(schema)}
            formData={model.parameters}
            validator={validator}
            extraErrors={model.extraErrors}
            showErrorList={false}
            noHtml5Validate={true}
            idPrefix={props.idPrefix}
            onChange={event => {
              model.parameters = (event.formData ?? {}) as ReadonlyJSONObject;
            }}
          />
        </div>
      )}
    </>
  );
}
