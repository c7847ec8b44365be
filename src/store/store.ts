// A store: everything one machine keeps for Orbit, in one home directory: the metadata database,
// the chunk pool, and a registry of the volumes mounted from it. This module opens and creates
// it; the layers below (meta, content, pool) do the work.
//
//   <home>/store.json        format version and identity; its presence makes a directory a store
//   <home>/meta.db           metadata (SQLite, WAL)
//   <home>/pool.json         the chunk pool: its disks and default policy (src/pool/pool-config.ts)
//   <home>/pool/             the pool's first disk, made with the store (others are anywhere)
//   <home>/run/<volume>.json the process serving a mounted volume, and where
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { CodecPool } from '../content/codec-pool.js';
import { MetaClient } from '../meta/client.js';
import { SqliteMeta } from '../meta/sqlite/host.js';
import { Disk } from '../pool/disk.js';
import { Pool } from '../pool/pool.js';
import { newPoolConfig, writePoolConfig } from '../pool/pool-config.js';
import { componentLogger } from '../log.js';
import { isAlive } from '../processes.js';

/** 2: the pool of disks (pool.json, fragments with headers); 1 kept chunks whole in <home>/pool. */
export const STORE_FORMAT = 2;
export const DEFAULT_VOLUME = 'default';

/** $ORBIT_HOME, else ~/.local/share/orbit. An empty ORBIT_HOME counts as unset (as `ORBIT_HOME=`
 * in a shell means), not as the current directory. */
export function defaultHome(): string {
  return process.env.ORBIT_HOME || path.join(homedir(), '.local', 'share', 'orbit');
}

/** A store that cannot be opened or made, with a message a user can act on. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

interface StoreFile {
  format: number;
  id: string;
  createdAt: string;
}

export interface MountRecord {
  volume: string;
  mountpoint: string;
  pid: number;
  since: string;
}

export class Store {
  private constructor(
    readonly home: string,
    readonly id: string,
    readonly meta: MetaClient,
    readonly chunks: Pool,
    readonly codec: CodecPool,
  ) {}

  /** Creates a store with the default volume, owned by the caller; an existing store is opened as it is. */
  static async init(home: string = defaultHome()): Promise<{ store: Store; created: boolean }> {
    const root = path.resolve(home);
    if (await readStoreFile(root)) return { store: await Store.open(root), created: false };
    const entries = await readdir(root).catch(() => [] as string[]);
    if (entries.length > 0) throw new StoreError(`${root} is not empty and is not an Orbit store; choose another --home`);
    await mkdir(root, { recursive: true, mode: 0o700 });
    const id = randomUUID();
    const firstDisk = path.join(root, 'pool');
    await Disk.label(firstDisk, id, 'home');
    await writePoolConfig(root, newPoolConfig(id, { id: 'home', path: firstDisk, state: 'active', added: new Date().toISOString() }));
    const store = await Store.openParts(root, id);
    await store.meta.createVolume(DEFAULT_VOLUME, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, umask: 0o022 });
    await store.meta.sync();
    // Written last: a store is only a store once everything it names exists.
    const file: StoreFile = { format: STORE_FORMAT, id: store.id, createdAt: new Date().toISOString() };
    await writeFile(path.join(root, 'store.json'), JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
    return { store, created: true };
  }

  static async open(home: string = defaultHome()): Promise<Store> {
    const root = path.resolve(home);
    const file = await readStoreFile(root);
    if (!file) throw new StoreError(`no Orbit store at ${root}: run 'orbit init' first (or set --home / ORBIT_HOME)`);
    if (file.format !== STORE_FORMAT) throw new StoreError(`the store at ${root} has format ${file.format}; this Orbit reads format ${STORE_FORMAT}`);
    return Store.openParts(root, file.id);
  }

  private static async openParts(root: string, id: string): Promise<Store> {
    // Mirrored on the pool's disks when it has three or more (meta/sqlite/mirror.ts).
    const meta = new MetaClient(await SqliteMeta.open(path.join(root, 'meta.db'), { mirrorPool: root }));
    const chunks = await Pool.open(root, componentLogger('pool'));
    const codec = new CodecPool();
    await codec.ready();
    return new Store(root, id, meta, chunks, codec);
  }

  /** Makes everything written so far durable: chunks before the metadata that names them. */
  async sync(): Promise<void> {
    await this.chunks.sync();
    await this.meta.sync();
  }

  async close(): Promise<void> {
    await this.sync();
    await this.chunks.close();
    await this.meta.close();
    await this.codec.close();
  }

  // ---- the registry of mounts ----

  private runFile(volume: string): string {
    return path.join(this.home, 'run', `${volume}.json`);
  }

  /** Volumes mounted now; records left by dead processes are dropped. */
  async mounts(): Promise<MountRecord[]> {
    const dir = path.join(this.home, 'run');
    const names = await readdir(dir).catch(() => [] as string[]);
    const live: MountRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const rec = await readJson<MountRecord>(path.join(dir, name));
      if (rec && isAlive(rec.pid)) live.push(rec);
      else await rm(path.join(dir, name), { force: true });
    }
    return live;
  }

  /** Records that this process serves `volume` at `mountpoint`; refuses a volume already mounted. */
  async claimMount(volume: string, mountpoint: string): Promise<void> {
    const existing = (await this.mounts()).find((m) => m.volume === volume);
    if (existing) throw new StoreError(`volume ${volume} is already mounted at ${existing.mountpoint} (process ${existing.pid})`);
    await mkdir(path.join(this.home, 'run'), { recursive: true });
    const rec: MountRecord = { volume, mountpoint, pid: process.pid, since: new Date().toISOString() };
    // 'wx': of two processes racing for one volume, one wins.
    await writeFile(this.runFile(volume), JSON.stringify(rec) + '\n', { flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new StoreError(`volume ${volume} is already being mounted`);
      throw err;
    });
  }

  async releaseMount(volume: string): Promise<void> {
    await rm(this.runFile(volume), { force: true });
  }
}

async function readStoreFile(root: string): Promise<StoreFile | undefined> {
  return readJson<StoreFile>(path.join(root, 'store.json'));
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StoreError(`${file} is unreadable: ${(err as Error).message}`);
  }
}
