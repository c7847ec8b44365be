// Prometheus metrics of a store, served over HTTP at /metrics while a volume is mounted
// (`orbit mount --metrics HOST:PORT`). Gauges are read from the pool and the jobs when scraped,
// so nothing is kept up to date between scrapes; counters are the pool's own (this process's).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { finished, JobStore } from '../jobs/job-store.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { recordedDamage } from '../store/damage.js';

export interface MetricsServer {
  /** http://host:port/metrics */
  readonly url: string;
  close(): Promise<void>;
}

/** Builds the registry: every value read from `store` at scrape time. */
export function storeMetrics(store: Store): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'orbit_process_' });
  const pool = store.chunks;
  const jobs = new JobStore(store.home);

  new Gauge({
    name: 'orbit_pool_disk_bytes',
    help: 'Bytes of each disk of the pool: its size (total), what the pool stores there (used) and what it may still take (free).',
    labelNames: ['disk', 'path', 'kind'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of pool.disks()) {
        const space = await d.disk?.space().catch(() => undefined);
        if (!space) continue;
        const labels = { disk: d.config.id, path: d.config.path };
        this.set({ ...labels, kind: 'total' }, space.totalBytes);
        this.set({ ...labels, kind: 'used' }, space.usedBytes);
        this.set({ ...labels, kind: 'free' }, space.freeBytes);
      }
    },
  });
  new Gauge({
    name: 'orbit_pool_disk_up',
    help: 'Whether the disk is readable (1) or not (0: gone, wiped, or marked failed), by its configured state.',
    labelNames: ['disk', 'path', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of pool.disks()) this.set({ disk: d.config.id, path: d.config.path, state: d.config.state }, d.available ? 1 : 0);
    },
  });
  new Gauge({
    name: 'orbit_pool_degraded_chunks',
    help: 'Chunks known to be below their policy: waiting for a background repair, plus those the last scrub found degraded.',
    registers: [registry],
    async collect() {
      const scrubs = (await jobs.list()).filter((j) => j.kind === 'scrub' && (j.summary !== undefined || !finished(j)));
      const last = scrubs[scrubs.length - 1];
      this.set(pool.healQueueLength + (last?.counts.degraded ?? 0));
    },
  });
  new Gauge({
    name: 'orbit_pool_lost_chunks',
    help: 'Chunks found with fewer fragments than a read needs (their files return EIO; orbit status names them).',
    registers: [registry],
    async collect() {
      this.set((await recordedDamage(store)).length);
    },
  });
  const counter = (name: string, help: string, value: () => number): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  };
  counter('orbit_pool_degraded_reads_total', 'Reads that passed over a missing or corrupt fragment, or rebuilt a shard from parity.', () => pool.counters.degradedReads);
  counter('orbit_pool_unreadable_reads_total', 'Reads that failed: too few fragments left (EIO).', () => pool.counters.unreadableReads);
  counter('orbit_pool_corrupt_fragments_total', 'Fragments that failed their checksums when read.', () => pool.counters.corruptFragments);
  counter('orbit_pool_repairs_total', 'Chunks repaired in the background after a degraded read.', () => pool.counters.repairs);
  counter('orbit_pool_repairs_failed_total', 'Background repairs that could not finish.', () => pool.counters.repairsFailed);

  const jobGauge = (name: string, help: string, value: (j: Awaited<ReturnType<JobStore['list']>>[number]) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['job', 'kind', 'state'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const j of await jobs.list()) {
          if (finished(j) && j.everyMs === undefined) continue;
          const v = value(j);
          if (v !== undefined) this.set({ job: j.id, kind: j.kind, state: j.state }, v);
        }
      },
    });
  };
  jobGauge('orbit_job_progress_ratio', 'How far each unfinished job (re-encode, scrub, rebuild, drain) is, from 0 to 1.', (j) => (j.progress.total > 0 ? Math.min(1, j.progress.done / j.progress.total) : undefined));
  jobGauge('orbit_job_done_bytes', 'Bytes each unfinished job has gone through.', (j) => j.progress.done);
  jobGauge('orbit_job_corrupt_fragments', 'Corrupt fragments each scrub or rebuild found in its current (or last) round.', (j) => j.counts.corrupt ?? 0);
  jobGauge('orbit_job_fragments_written', 'Fragments each job wrote (repaired, rebuilt, moved or re-encoded) in its current (or last) round.', (j) => j.counts.written ?? j.counts.rewritten ?? 0);
  return registry;
}

/** Serves the store's metrics at http://listen/metrics. */
export async function serveMetrics(store: Store, listen: { host: string; port: number }, log: Logger): Promise<MetricsServer> {
  const registry = storeMetrics(store);
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        log.warn({ err }, 'metrics: a scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  server.unref(); // the mount keeps the process alive, not the metrics
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/metrics`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
