// Prometheus metrics and /healthz on a loopback HTTP port (own registry, so
// embedding the relay in another process does not mix metrics).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import { QUEUE_STATES, type QueueState } from './queue/types.ts';

export interface RelayMetrics {
  registry: client.Registry;
  delivered: client.Counter<'account'>;
  deferred: client.Counter<'account'>;
  bounced: client.Counter<'account'>;
  accepted: client.Counter;
  tokenRefreshFailures: client.Counter<'account'>;
  latency: client.Histogram<'account'>;
  accountAlert: client.Gauge<'account'>;
}

/** The listener's counters since start (summed over listener threads). */
export interface ListenerCounts {
  connections: number;
  rejected: number;
  authFailures: number;
  authOk: number;
  authRemembered: number;
}

export function createMetrics(queueSurvey: () => Promise<Record<QueueState, { count: number; oldest?: number }>>, listenerCounts: () => ListenerCounts, certificateNotAfter: () => string): RelayMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'smtp365_relay_' });
  // One look at the spool per scrape, shared by the gauges that need it (prom-client collects them together).
  let pending: Promise<Record<QueueState, { count: number; oldest?: number }>> | undefined;
  const survey = () => {
    pending ??= queueSurvey().finally(() => setImmediate(() => (pending = undefined)));
    return pending;
  };
  new client.Gauge({
    name: 'smtp365_relay_certificate_not_after_seconds',
    help: 'When the listeners\' TLS certificate expires (Unix time): alert on it minus time()',
    registers: [registry],
    collect() {
      this.set(Date.parse(certificateNotAfter()) / 1000);
    },
  });
  // Counted by the listener (on its threads, when there are some): read when scraped.
  const fromListener = (name: string, help: string, read: (c: ListenerCounts) => number) =>
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read(listenerCounts()));
      },
    });
  fromListener('smtp365_relay_connections_total', 'SMTP connections taken', (c) => c.connections);
  fromListener('smtp365_relay_refused_total', 'Commands or messages refused by the listener (no permission, sender policy, size, protocol)', (c) => c.rejected);
  new client.Counter({
    name: 'smtp365_relay_auth_total',
    help: 'Relay users\' AUTH attempts: ok (scrypt check), remembered (ok from limits.authCache, no check of its own), failed',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      const c = listenerCounts();
      this.reset();
      this.inc({ result: 'ok' }, c.authOk - c.authRemembered);
      this.inc({ result: 'remembered' }, c.authRemembered);
      this.inc({ result: 'failed' }, c.authFailures);
    },
  });
  new client.Gauge({
    name: 'smtp365_relay_queue_messages',
    help: 'Messages in the queue, per state (incoming, active, deferred, hold, failed)',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const seen = await survey();
      for (const s of QUEUE_STATES) this.set({ state: s }, seen[s].count);
    },
  });
  new client.Gauge({
    name: 'smtp365_relay_queue_oldest_seconds',
    help: 'Age since it was queued of the oldest message in each state (0 when there is none): alert on deferred (a flush or retry brings old ids back to incoming)',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const seen = await survey();
      const now = Date.now();
      for (const s of QUEUE_STATES) this.set({ state: s }, seen[s].oldest !== undefined ? Math.max(0, (now - seen[s].oldest) / 1000) : 0);
    },
  });
  return {
    registry,
    delivered: new client.Counter({ name: 'smtp365_relay_delivered_total', help: 'Messages delivered to every recipient', labelNames: ['account'], registers: [registry] }),
    deferred: new client.Counter({ name: 'smtp365_relay_deferred_total', help: 'Delivery attempts that ended in a retry later', labelNames: ['account'], registers: [registry] }),
    bounced: new client.Counter({ name: 'smtp365_relay_bounced_total', help: 'Messages that failed for at least one recipient (moved to failed/)', labelNames: ['account'], registers: [registry] }),
    accepted: new client.Counter({ name: 'smtp365_relay_accepted_total', help: 'Messages accepted (250) and queued', registers: [registry] }),
    tokenRefreshFailures: new client.Counter({ name: 'smtp365_relay_token_refresh_failures_total', help: 'Failed token refreshes (background keep-alive and delivery)', labelNames: ['account'], registers: [registry] }),
    latency: new client.Histogram({
      name: 'smtp365_relay_delivery_latency_seconds',
      help: 'Time from acceptance (250) to delivery at Microsoft',
      labelNames: ['account'],
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400],
      registers: [registry],
    }),
    accountAlert: new client.Gauge({ name: 'smtp365_relay_account_alert', help: '1 while an account cannot deliver (sign-in expired or revoked, SMTP AUTH off, ...): mail stays queued', labelNames: ['account'], registers: [registry] }),
  };
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: { host: string; port: number; metrics: RelayMetrics; health: () => Promise<{ ok: boolean; body: Record<string, unknown> }> }): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (url === '/metrics') {
      opts.metrics.registry.metrics().then((text) => reply(200, opts.metrics.registry.contentType, text), (err: Error) => reply(500, 'text/plain', err.message + '\n'));
      return;
    }
    if (url === '/healthz' || url === '/health') {
      opts.health().then(
        (h) => reply(h.ok ? 200 : 503, 'application/json', JSON.stringify(h.body) + '\n'),
        (err: Error) => reply(503, 'application/json', JSON.stringify({ status: 'error', error: err.message }) + '\n'),
      );
      return;
    }
    reply(404, 'text/plain', 'smtp365 relay: /metrics, /healthz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
