/**
 * A real HTTP server on localhost for the tests of what speaks to the jobs API through the real
 * client (real fetch, real URLs, headers and error responses): it records every request and
 * answers what the test scripted, the next queued answer first.
 */

import * as http from 'http';
import { AddressInfo } from 'net';

import { ServerConnection } from '@jupyterlab/services';

import { JobsClient } from '../client';

/** A request as the server received it (without JupyterLab's cache buster). */
export interface IRecorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An answer: its status, its body as text, its content type (JSON by default). */
export interface IAnswer {
  status: number;
  body?: string;
  type?: string;
}

/** The server; `start` it before the tests of a file, `stop` it after them. */
export class ScriptedServer {
  /** Every request, in order. */
  recorded: IRecorded[] = [];
  /** JSON answers given in order, before `answer` is asked. */
  queue: { status: number; body: unknown }[] = [];
  /** The answer once `queue` is empty. */
  answer: (request: IRecorded) => IAnswer = () => ({
    status: 500,
    body: '{}'
  });
  /** The base URL of the server (`path` below it). */
  baseUrl = '';

  /** Listen on a free port of 127.0.0.1; the API is served below `path`. */
  async start(path = '/'): Promise<void> {
    this._server = http.createServer((req, res) => {
      // JupyterLab appends a cache buster (`?1700000000000`) to every request: leave it out.
      const url = req.url!.replace(/[?&]\d{10,}$/, '');
      const chunks: Buffer[] = [];
      req.on('data', chunk => chunks.push(chunk));
      req.on('end', () => {
        const request = {
          method: req.method!,
          url,
          headers: req.headers,
          body: Buffer.concat(chunks).toString()
        };
        this.recorded.push(request);
        const queued = this.queue.shift();
        const reply = queued
          ? { status: queued.status, body: JSON.stringify(queued.body) }
          : this.answer(request);
        res.writeHead(reply.status, {
          'Content-Type': reply.type ?? 'application/json'
        });
        res.end(reply.body ?? '');
      });
    });
    const server = this._server;
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    this.baseUrl = `http://127.0.0.1:${port}${path}`;
  }

  async stop(): Promise<void> {
    const server = this._server;
    if (server) {
      await new Promise(resolve => server.close(resolve));
    }
  }

  /** Forget the requests and the scripted answers (between tests). */
  reset(): void {
    this.recorded = [];
    this.queue = [];
    this.answer = () => ({ status: 500, body: '{}' });
  }

  /** A client of this server (a token, unless `settings` say otherwise). */
  client(settings: Partial<ServerConnection.ISettings> = {}): JobsClient {
    return new JobsClient({
      serverSettings: ServerConnection.makeSettings({
        baseUrl: this.baseUrl,
        token: 't',
        ...settings
      })
    });
  }

  private _server: http.Server | null = null;
}
