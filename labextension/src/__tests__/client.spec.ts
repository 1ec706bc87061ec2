/**
 * The REST client against a real HTTP server on localhost: real fetch, real URLs and headers.
 * The server answers what each test scripts and records what it was asked.
 */

import { ServerConnection } from '@jupyterlab/services';

import { apiUrl, JobsClient, listParams } from '../client';
import { makeJob } from './fakes';
import { ScriptedServer } from './scripted';

const server = new ScriptedServer();

beforeAll(() => server.start('/user/ana/'));

afterAll(() => server.stop());

beforeEach(() => {
  server.reset();
  server.answer = () => ({ status: 200, body: '{}' });
});

function client(): JobsClient {
  return server.client({
    wsUrl: server.baseUrl.replace('http', 'ws'),
    token: 'secret-token',
    appendToken: false
  });
}

describe('URL building', () => {
  it('joins the base URL, the API path and the query, leaving out empty values', () => {
    expect(
      apiUrl('http://h/base/', 'jobs', { a: 1, b: '', c: null, d: undefined })
    ).toBe('http://h/base/jobs/api/jobs?a=1');
    expect(apiUrl('http://h/', 'stats')).toBe('http://h/jobs/api/stats');
  });

  it('encodes filters as the server reads them', () => {
    expect(
      listParams({
        status: ['queued', 'running'],
        q: ' fit & plot ',
        limit: 50,
        cursor: null
      })
    ).toEqual({
      status: 'queued,running',
      owner: undefined,
      q: 'fit & plot',
      limit: 50,
      cursor: undefined
    });
    expect(listParams({ status: [] }).status).toBeUndefined();
  });
});

describe('notebook jobs and schedules', () => {
  it('posts a notebook job as JSON and reads its result', async () => {
    server.answer = () => ({ status: 201, body: JSON.stringify(makeJob(4)) });
    const request = {
      spec: { kind: 'notebook' as const, name: 'r' },
      notebook: { path: 'a b.ipynb', parameters: { n: 1 }, kernel_name: null }
    };
    await client().submitNotebook(request);
    expect(server.recorded[0].method).toBe('POST');
    expect(server.recorded[0].url).toBe('/user/ana/jobs/api/jobs');
    expect(server.recorded[0].headers['content-type']).toBe('application/json');
    expect(JSON.parse(server.recorded[0].body)).toEqual(request);

    server.answer = () => ({
      status: 200,
      body: '<p>out</p>',
      type: 'text/html'
    });
    expect(await client().notebookHtml(4)).toBe('<p>out</p>');
    expect(server.recorded[1].url).toBe(
      '/user/ana/jobs/api/jobs/4/notebook?format=html'
    );
  });

  it('lists the runs of a schedule and previews a timing', async () => {
    server.answer = () => ({
      status: 200,
      body: JSON.stringify({ jobs: [], next_cursor: null, counts: {} })
    });
    await client().list({ schedule: 7 });
    expect(server.recorded[0].url).toBe('/user/ana/jobs/api/jobs?schedule=7');
    server.answer = () => ({
      status: 200,
      body: JSON.stringify({ description: 'Every hour', next: [1, 2, 3] })
    });
    await client().previewSchedule({
      cron: '0 * * * *',
      timezone: 'Europe/Paris'
    });
    expect(server.recorded[1].url).toBe(
      '/user/ana/jobs/api/schedules/preview?cron=0%20*%20*%20*%20*&timezone=Europe%2FParis'
    );
  });

  it('gives a 400 its server message', async () => {
    server.answer = () => ({
      status: 400,
      body: JSON.stringify({ message: 'unknown timezone: Mars/Base' })
    });
    await expect(
      client().createSchedule({
        name: 'x',
        target: { kind: 'notebook', path: 'a.ipynb' },
        cron: '0 * * * *',
        every: null,
        timezone: 'Mars/Base'
      })
    ).rejects.toThrow('unknown timezone: Mars/Base');
    expect(server.recorded[0].method).toBe('POST');
    expect(server.recorded[0].url).toBe('/user/ana/jobs/api/schedules');
  });
});

describe('JobsClient requests', () => {
  it('lists with filters, under the base URL, with the token', async () => {
    const page = {
      jobs: [makeJob(3)],
      next_cursor: '3',
      counts: { queued: 1 }
    };
    server.answer = () => ({ status: 200, body: JSON.stringify(page) });
    const result = await client().list({
      status: ['failed'],
      q: 'a&b',
      limit: 20,
      cursor: 'abc'
    });
    expect(result).toEqual(page);
    expect(server.recorded).toHaveLength(1);
    expect(server.recorded[0].method).toBe('GET');
    expect(server.recorded[0].url).toBe(
      '/user/ana/jobs/api/jobs?status=failed&q=a%26b&limit=20&cursor=abc'
    );
    expect(server.recorded[0].headers.authorization).toBe('token secret-token');
  });

  it('uses the verbs of each action', async () => {
    server.answer = request =>
      request.method === 'DELETE'
        ? { status: 204 }
        : { status: 200, body: JSON.stringify(makeJob(4)) };
    const api = client();
    await api.cancel(4);
    await api.retry(4);
    await api.release(4);
    await api.remove(4);
    await api.get(4);
    await api.status([1, 2, 3]);
    await api.logs(4, 1024, 4096);
    await api.outputs(4);
    await api.stats();
    await api.stats({ mine: true, type: 'train' });
    await api.stats({ type: '' });
    expect(server.recorded.map(r => `${r.method} ${r.url}`)).toEqual([
      'POST /user/ana/jobs/api/jobs/4/cancel',
      'POST /user/ana/jobs/api/jobs/4/retry',
      'POST /user/ana/jobs/api/jobs/4/release',
      'DELETE /user/ana/jobs/api/jobs/4',
      'GET /user/ana/jobs/api/jobs/4',
      'GET /user/ana/jobs/api/status?ids=1%2C2%2C3',
      'GET /user/ana/jobs/api/jobs/4/logs?offset=1024&limit=4096',
      'GET /user/ana/jobs/api/jobs/4/outputs',
      'GET /user/ana/jobs/api/stats',
      'GET /user/ana/jobs/api/stats?mine=true&type=train',
      'GET /user/ana/jobs/api/stats'
    ]);
  });
});

describe('JobsClient errors', () => {
  it("raises JupyterLab's ResponseError with the server's message", async () => {
    server.answer = () => ({
      status: 409,
      body: JSON.stringify({
        message: 'job 4 is running: cancel it first',
        reason: 'Conflict',
        type: 'IllegalTransition',
        detail: { id: 4 }
      })
    });
    const error = await client()
      .remove(4)
      .catch(e => e);
    expect(error).toBeInstanceOf(ServerConnection.ResponseError);
    expect(error.message).toBe('job 4 is running: cancel it first');
    expect(error.response.status).toBe(409);
  });

  it('names the status when the answer is not JSON', async () => {
    server.answer = () => ({
      status: 502,
      body: '<html>Bad gateway</html>',
      type: 'text/html'
    });
    const error = await client()
      .stats()
      .catch(e => e);
    expect(error).toBeInstanceOf(ServerConnection.ResponseError);
    expect(error.response.status).toBe(502);
    expect(error.message).toContain('502');
  });

  it("reads jupyter_server's own error messages", async () => {
    server.answer = () => ({
      status: 403,
      body: JSON.stringify({ message: 'Forbidden', reason: null })
    });
    const error = await client()
      .get(1)
      .catch(e => e);
    expect(error.message).toContain('Forbidden');
    expect(error.response.status).toBe(403);
  });

  it('fails with a network error when the server is gone', async () => {
    const api = new JobsClient({
      serverSettings: ServerConnection.makeSettings({
        baseUrl: 'http://127.0.0.1:9/'
      })
    });
    await expect(api.stats()).rejects.toBeInstanceOf(
      ServerConnection.NetworkError
    );
  });
});
