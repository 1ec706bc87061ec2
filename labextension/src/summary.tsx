/**
 * A typed job in the detail view: its job type and parameters, and the summary its type's
 * `summarize` made of the run (JSON, computed in the worker and served with the job). A flat
 * object shows as a table of names and values, anything else as indented JSON; all of it is
 * set as text, never as HTML.
 */

import { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import type { IJob } from './types';

/** A JSON value on one line, cut to `limit` characters. */
export function jsonText(value: unknown, limit = 200): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** Whether a summary is an object whose values are all numbers, text, booleans or null. */
export function isFlat(value: unknown): value is Record<string, unknown> {
  return (
    !!value &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    Object.values(value).every(v => v === null || typeof v !== 'object')
  );
}

/** The type and parameters of a typed job, as facts (`dt`/`dd` pairs); nothing for others. */
export function TypedFacts(props: {
  job: IJob;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { job, trans } = props;
  if (job.type === null) {
    return null;
  }
  return (
    <>
      <dt>{trans.__('Job type')}</dt>
      <dd className="jp-JobDetail-type">{job.type}</dd>
      <dt>{trans.__('Parameters')}</dt>
      <dd className="jp-JobDetail-parameters">
        {jsonText(job.parameters ?? {})}
      </dd>
    </>
  );
}

/** The summary section of a typed job that has one. */
export function TypedSummary(props: {
  job: IJob;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { job, trans } = props;
  const summary = job.summary;
  if (summary === null || summary === undefined) {
    return null;
  }
  return (
    <section
      className="jp-JobDetail-section jp-JobDetail-summaryView"
      aria-label={trans.__('Summary')}
    >
      <h3 className="jp-JobDetail-heading">{trans.__('Summary')}</h3>
      {isFlat(summary) ? (
        <dl className="jp-JobDetail-facts">
          {Object.entries(summary).map(([name, value]) => (
            <React.Fragment key={name}>
              <dt>{name}</dt>
              <dd>{jsonText(value)}</dd>
            </React.Fragment>
          ))}
        </dl>
      ) : (
        <pre className="jp-JobDetail-summaryJson">
          {JSON.stringify(summary, null, 2)}
        </pre>
      )}
    </section>
  );
}
