// The embedded metadata engine: every MetaEngine operation as one SQLite transaction, with
// prepared statements. It is synchronous (better-sqlite3), so it runs on a worker thread
// (host.ts), never on the event loop that serves FUSE.
import Database from 'better-sqlite3';
import type { Statement } from 'better-sqlite3';
import {
  FileType,
  INHERITED_XATTRS,
  MetaError,
  NAME_MAX,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  type AttrChanges,
  type Caller,
  type ChunkHolding,
  type ChunkInfo,
  type DirEntry,
  type Extent,
  type IndexedInode,
  type InodeAttr,
  type Ino,
  type Made,
  type CreateAhead,
  type NewNode,
  type Removal,
  type Removed,
  type Renamed,
  type Time,
  type Usage,
  type VolumeChanges,
  type VolumeInfo,
} from '../contract.js';
import { clockTime, nameError, newInodeAttr } from '../new-inode.js';
import { MAX_EXTENT, SCHEMA, SCHEMA_VERSION, UPGRADE_FROM_1 } from './schema.js';
import { packListing, unpackListing, type ListedRow, type PackedListing } from './listing.js';
import type { ChunkId } from '../../pool/contract.js';

const S_IFMT = 0o170000;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

interface InodeRow {
  ino: number;
  volume: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  atime_s: number; atime_ns: number;
  mtime_s: number; mtime_ns: number;
  ctime_s: number; ctime_ns: number;
  parent: number | null;
  target: string | null;
  changed: number;
}

interface ExtentRow {
  offset: number;
  length: number;
  chunk: Buffer;
  chunk_offset: number;
}

/** What a mirrored operation (mirror.ts) fixes for every copy of the database it runs on, so that
 * the copies stay identical: its time, and the tag its sequence number gets (see seq()). */
let stamp: { time: Time; tag: string } | undefined;

/** Runs `fn` with one time and one sequence tag for every operation it calls. */
export function stamped<T>(fn: () => T): T {
  const outer = stamp;
  stamp = { time: clockTime(), tag: newOpTag() };
  try {
    return fn();
  } finally {
    stamp = outer;
  }
}

/** A tag that tells one writer's change from another's at the same sequence number. */
function newOpTag(): string {
  return Math.floor(Math.random() * 2 ** 48).toString(36);
}

function now(): Time {
  return stamp ? stamp.time : clockTime();
}


function toAttr(r: InodeRow): InodeAttr {
  return {
    ino: r.ino, mode: r.mode, nlink: r.nlink, uid: r.uid, gid: r.gid, rdev: r.rdev, size: r.size,
    atime: { sec: r.atime_s, nsec: r.atime_ns },
    mtime: { sec: r.mtime_s, nsec: r.mtime_ns },
    ctime: { sec: r.ctime_s, nsec: r.ctime_ns },
    generation: 0, // inode numbers are never reused
  };
}

const isDir = (mode: number): boolean => (mode & S_IFMT) === FileType.Directory;

function checkName(name: string): void {
  const why = nameError(name);
  if (why) throw why;
}

export class SqliteEngine {
  private readonly db: Database.Database;
  private readonly st: Record<string, Statement>;
  /** setattr's UPDATE statements, one per set of columns changed, prepared on first use. */
  private readonly setattrStatements = new Map<string, Statement>();
  /** The tag of this engine's operations when no stamp gives one (see seq()). */
  private readonly writer = newOpTag();
  /** Inside transaction(): operations join it. */
  private joined = false;

  constructor(path: string) {
    this.db = new Database(path);
    // WAL: readers never block the writer. NORMAL: commits are ordered and crash-consistent
    // without an fsync each; sync() makes them durable when an application asks (fsync).
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('cache_size = -65536'); // 64 MiB of page cache
    this.db.pragma('temp_store = MEMORY');
    const hasSettings = this.db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'settings'").get() !== undefined;
    const found = hasSettings ? (this.db.prepare("SELECT value FROM settings WHERE key = 'schema'").pluck().get() as string | undefined) : undefined;
    if (found !== undefined && Number(found) !== SCHEMA_VERSION) {
      if (Number(found) !== 1) throw new Error(`metadata schema ${found} is not supported (this Orbit reads ${SCHEMA_VERSION})`);
      // Version 1 becomes 2 in place: one transaction, so a crash leaves one or the other.
      this.db.transaction(() => {
        this.db.exec(UPGRADE_FROM_1 + SCHEMA);
        this.db.prepare("UPDATE settings SET value = ? WHERE key = 'schema'").run(String(SCHEMA_VERSION));
      }).immediate();
    }
    this.db.exec(SCHEMA);
    if (found === undefined) this.db.prepare("INSERT INTO settings VALUES ('schema', ?) ON CONFLICT (key) DO NOTHING").run(String(SCHEMA_VERSION));
    if (this.db.prepare("SELECT 1 FROM settings WHERE key = 'seq'").get() === undefined) this.db.prepare("INSERT INTO settings VALUES ('seq', '0:')").run();

    const p = (sql: string): Statement => this.db.prepare(sql);
    this.st = {
      inode: p('SELECT * FROM inodes WHERE ino = ?'),
      insertInode: p(`INSERT INTO inodes (ino, volume, mode, nlink, uid, gid, rdev, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, parent, target)
        VALUES (@ino, @volume, @mode, @nlink, @uid, @gid, @rdev, @size, @s, @ns, @s, @ns, @s, @ns, @parent, @target)`),
      reserveInodes: p("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'inodes' RETURNING seq").pluck(),
      deleteInode: p('DELETE FROM inodes WHERE ino = ?'),
      setNlink: p('UPDATE inodes SET nlink = nlink + ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?'),
      touchDir: p('UPDATE inodes SET mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?'),
      touchCtime: p('UPDATE inodes SET ctime_s = ?, ctime_ns = ? WHERE ino = ?'),
      setParent: p('UPDATE inodes SET parent = ? WHERE ino = ?'),
      dentry: p('SELECT ino, type FROM dentries WHERE parent = ? AND name = ?'),
      insertDentry: p('INSERT INTO dentries (parent, name, ino, type) VALUES (?, ?, ?, ?)'),
      deleteDentry: p('DELETE FROM dentries WHERE parent = ? AND name = ?'),
      moveDentry: p('UPDATE dentries SET parent = ?, name = ? WHERE parent = ? AND name = ?'),
      setDentryTarget: p('UPDATE dentries SET ino = ?, type = ? WHERE parent = ? AND name = ?'),
      anyChild: p('SELECT 1 FROM dentries WHERE parent = ? LIMIT 1'),
      list: p('SELECT rowid, name, ino, type FROM dentries WHERE parent = ? AND rowid > ? ORDER BY rowid LIMIT ?'),
      xattrsOfMany: p('SELECT ino, name, value FROM xattrs WHERE ino IN (SELECT value FROM json_each(?))'),
      // Rows as arrays (ListedRow), the columns an entry needs: a directory of 100 entries lists
      // in a quarter of the time of named rows with every column.
      listWithAttrs: p('SELECT d.rowid + 2, d.type, i.ino, i.mode, i.nlink, i.uid, i.gid, i.rdev, i.size, i.atime_s, i.atime_ns, i.mtime_s, i.mtime_ns, i.ctime_s, i.ctime_ns, d.name FROM dentries d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ? AND d.rowid > ? ORDER BY d.rowid LIMIT ?').raw(),
      volumeByName: p('SELECT * FROM volumes WHERE name = ?'),
      volumes: p('SELECT v.*, a.peer, a.remote_volume, a.synced_to FROM volumes v LEFT JOIN attached_volumes a ON a.volume = v.id ORDER BY v.name'),
      insertVolume: p('INSERT INTO volumes (name, root, created_s, created_ns) VALUES (?, ?, ?, ?)'),
      setVolumeOfRoot: p('UPDATE inodes SET volume = ?, parent = ino WHERE ino = ?'),
      extentsNear: p('SELECT offset, length, chunk, chunk_offset FROM extents WHERE ino = ? AND offset > ? AND offset < ? ORDER BY offset'),
      deleteExtent: p('DELETE FROM extents WHERE ino = ? AND offset = ?'),
      insertExtent: p('INSERT INTO extents (ino, offset, length, chunk, chunk_offset) VALUES (?, ?, ?, ?, ?)'),
      chunkRefs: p('UPDATE chunks SET refs = refs + ? WHERE id = ?'),
      // A chunk known only as a peer's (stored size 0) becomes this store's once it is stored here.
      insertChunk: p('INSERT INTO chunks (id, size, stored_size, refs) VALUES (?, ?, ?, 0) ON CONFLICT (id) DO UPDATE SET stored_size = excluded.stored_size WHERE stored_size = 0 AND excluded.stored_size > 0'),
      setRealMark: p('INSERT INTO real_marks (ino, real) VALUES (?, ?) ON CONFLICT (ino) DO UPDATE SET real = excluded.real'),
      clearRealMark: p('DELETE FROM real_marks WHERE ino = ?'),
      realMarkOf: p('SELECT real FROM real_marks WHERE ino = ?').pluck(),
      parentOfDir: p('SELECT parent FROM inodes WHERE ino = ?').pluck(),
      // No index by ino on dentries (every create would pay for it): this serves getxattr only.
      parentOfFile: p('SELECT parent FROM dentries WHERE ino = ? LIMIT 1').pluck(),
      realMarksIn: p('SELECT m.ino, m.real FROM real_marks m JOIN inodes i ON i.ino = m.ino JOIN volumes v ON v.id = i.volume WHERE v.name = ?'),
      // The chunks of the files under a Real mark, down to (not into) inodes marked Unreal.
      chunksUnder: p(`WITH RECURSIVE tree(ino) AS (
          SELECT ? UNION
          SELECT d.ino FROM dentries d JOIN tree t ON d.parent = t.ino
          WHERE NOT EXISTS (SELECT 1 FROM real_marks m WHERE m.ino = d.ino AND m.real = 0))
        SELECT e.chunk AS id, sum(e.length) AS bytes, c.stored_size AS stored FROM tree t JOIN extents e ON e.ino = t.ino JOIN chunks c ON c.id = e.chunk GROUP BY e.chunk`),
      chunksOfVolume: p(`SELECT e.chunk AS id, sum(e.length) AS bytes, c.stored_size AS stored FROM extents e JOIN inodes i ON i.ino = e.ino JOIN volumes v ON v.id = i.volume
        JOIN chunks c ON c.id = e.chunk WHERE v.name = ? GROUP BY e.chunk`),
      keptByThisStore: p(`SELECT 1 WHERE EXISTS (SELECT 1 FROM extents e JOIN inodes i ON i.ino = e.ino WHERE e.chunk = @id AND i.volume NOT IN (SELECT volume FROM attached_volumes))
        OR EXISTS (SELECT 1 FROM chunk_pins WHERE chunk = @id)`),
      setStoredSize: p('UPDATE chunks SET stored_size = ? WHERE id = ? AND refs >= 0'),
      volumeHoldsChunk: p('SELECT 1 FROM extents e JOIN inodes i ON i.ino = e.ino JOIN volumes v ON v.id = i.volume WHERE e.chunk = ? AND v.name = ? LIMIT 1'),
      pin: p('INSERT INTO chunk_pins (chunk, token, until) VALUES (?, ?, ?) ON CONFLICT (chunk, token) DO UPDATE SET until = excluded.until'),
      unpin: p('DELETE FROM chunk_pins WHERE chunk = ? AND token = ?'),
      unpinToken: p('DELETE FROM chunk_pins WHERE token = ?'),
      dropLapsedPins: p('DELETE FROM chunk_pins WHERE until < ?'),
      chunkRefsOf: p('SELECT refs FROM chunks WHERE id = ?').pluck(),
      dropInodeChunkRefs: p('UPDATE chunks SET refs = refs - (SELECT count(*) FROM extents e WHERE e.ino = @ino AND e.chunk = chunks.id) WHERE id IN (SELECT chunk FROM extents WHERE ino = @ino)'),
      deleteExtentsOf: p('DELETE FROM extents WHERE ino = ?'),
      deleteXattrsOf: p('DELETE FROM xattrs WHERE ino = ?'),
      unreferenced: p('SELECT id, size, stored_size FROM chunks WHERE refs = 0 LIMIT ?'),
      collectable: p('SELECT id, size, stored_size FROM chunks c WHERE refs = 0 AND NOT EXISTS (SELECT 1 FROM chunk_pins p WHERE p.chunk = c.id AND p.until >= ?) LIMIT ?'),
      claimChunk: p('UPDATE chunks SET refs = -1, claimed_at = ? WHERE id = ? AND refs = 0'),
      staleClaims: p('SELECT id FROM chunks WHERE refs = -1 AND claimed_at < ?').pluck(),
      forgetChunk: p('DELETE FROM chunks WHERE id = ? AND refs = -1'),
      claimOrphan: p('INSERT INTO chunks (id, size, stored_size, refs, claimed_at) VALUES (?, 0, 0, -1, ?) ON CONFLICT (id) DO NOTHING'),
      xattrOfFilesUsing: p('SELECT DISTINCT x.value FROM (SELECT DISTINCT ino FROM extents WHERE chunk = @chunk) e LEFT JOIN xattrs x ON x.ino = e.ino AND x.name = @name').pluck(),
      inheritXattrs: p(`INSERT INTO xattrs (ino, name, value) SELECT ?, name, value FROM xattrs WHERE ino = ? AND name IN (${INHERITED_XATTRS.map((n) => `'${n}'`).join(', ')})`),
      xattr: p('SELECT value FROM xattrs WHERE ino = ? AND name = ?').pluck(),
      xattrNames: p('SELECT name FROM xattrs WHERE ino = ? ORDER BY name').pluck(),
      setXattr: p('INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?) ON CONFLICT (ino, name) DO UPDATE SET value = excluded.value'),
      deleteXattr: p('DELETE FROM xattrs WHERE ino = ? AND name = ?'),
      growAndTouch: p('UPDATE inodes SET size = max(size, ?), mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?'),
      markSynced: p("INSERT INTO settings VALUES ('synced', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      changedInodes: p('SELECT * FROM inodes WHERE volume = ? AND changed > ? ORDER BY changed, ino LIMIT ?'),
      inodesChangedAt: p('SELECT * FROM inodes WHERE volume = ? AND changed = ? ORDER BY ino'),
      removedInodes: p('SELECT ino FROM removed_inodes WHERE volume = ? AND changed > ? AND changed <= ? ORDER BY changed, ino').pluck(),
      entriesOf: p('SELECT name, ino, type FROM dentries WHERE parent = ? ORDER BY rowid'),
      extentsOf: p('SELECT offset, length, chunk, chunk_offset FROM extents WHERE ino = ? ORDER BY offset'),
      xattrsOf: p('SELECT name, value FROM xattrs WHERE ino = ? ORDER BY name'),
      attached: p('SELECT * FROM attached_volumes WHERE volume = ?'),
      insertAttached: p('INSERT INTO attached_volumes (volume, peer, remote_volume) VALUES (?, ?, ?)'),
      setSyncedTo: p('UPDATE attached_volumes SET synced_to = ? WHERE volume = ?'),
      remoteIno: p('SELECT ino FROM remote_inodes WHERE volume = ? AND remote = ?').pluck(),
      mapRemote: p('INSERT INTO remote_inodes (volume, remote, ino) VALUES (?, ?, ?)'),
      unmapRemote: p('DELETE FROM remote_inodes WHERE volume = ? AND remote = ?'),
      applyAttr: p(`UPDATE inodes SET mode = @mode, nlink = @nlink, uid = @uid, gid = @gid, rdev = @rdev, size = @size,
        atime_s = @as, atime_ns = @ans, mtime_s = @ms, mtime_ns = @mns, ctime_s = @cs, ctime_ns = @cns, target = @target WHERE ino = @ino`),
      deleteEntriesOf: p('DELETE FROM dentries WHERE parent = ?'),
      deleteEntriesTo: p('DELETE FROM dentries WHERE ino = ?'),
      unclaimChunk: p('UPDATE chunks SET refs = 0, claimed_at = 0 WHERE id = ? AND refs < 0'),
      seq: p("SELECT value FROM settings WHERE key = 'seq'").pluck(),
      // CAST reads the number before the ':'.
      bumpSeq: p("UPDATE settings SET value = (CAST(value AS INTEGER) + 1) || ':' || ? WHERE key = 'seq'"),
    };
  }

  // ---- volumes ----

  createVolume(name: string, owner: Caller): VolumeInfo {
    return this.tx(() => {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw new MetaError('EINVAL', `bad volume name ${JSON.stringify(name)}: letters, digits, '.', '_', '-', at most 64`);
      if (this.st.volumeByName!.get(name)) throw new MetaError('EEXIST', `volume ${name} exists`);
      const t = now();
      const root = this.newInode(0, FileType.Directory | 0o755, 2, owner.uid, owner.gid, 0, null, null, t);
      const id = Number(this.st.insertVolume!.run(name, root, t.sec, t.nsec).lastInsertRowid);
      this.st.setVolumeOfRoot!.run(id, root);
      return { id, name, root, createdAt: t };
    });
  }

  volumes(): VolumeInfo[] {
    type Row = { id: number; name: string; root: number; created_s: number; created_ns: number; peer: string | null; remote_volume: string | null; synced_to: number | null };
    return (this.st.volumes!.all() as Row[]).map((v) => ({
      id: v.id, name: v.name, root: v.root, createdAt: { sec: v.created_s, nsec: v.created_ns },
      ...(v.peer !== null ? { origin: { peer: v.peer, volume: v.remote_volume!, syncedTo: v.synced_to! } } : {}),
    }));
  }

  attachVolume(name: string, owner: Caller, origin: { peer: string; volume: string }): VolumeInfo {
    return this.tx(() => {
      const v = this.createVolume(name, owner);
      this.st.insertAttached!.run(v.id, origin.peer, origin.volume);
      return { ...v, origin: { ...origin, syncedTo: 0 } };
    });
  }

  applyChanges(volume: string, changes: VolumeChanges): Ino[] {
    return this.tx(() => {
      const v = this.st.volumeByName!.get(volume) as { id: number; root: number } | undefined;
      const attached = v && (this.st.attached!.get(v.id) as { synced_to: number } | undefined);
      if (!v || !attached) throw new MetaError('EINVAL', `volume ${volume} is not attached from a peer`);
      const local = (remote: Ino): Ino | undefined => (remote === changes.root ? v.root : (this.st.remoteIno!.get(v.id, remote) as Ino | undefined));
      /** The local inode for a peer's, made (as `type`, filled in by its own record) if new. */
      const localOrNew = (remote: Ino, type: number): Ino => {
        const known = local(remote);
        if (known !== undefined) return known;
        const ino = this.newInode(v.id, type, 1, 0, 0, 0, null, null, { sec: 0, nsec: 0 });
        this.st.mapRemote!.run(v.id, remote, ino);
        return ino;
      };
      // Attributes first, so that entries find every inode of the page.
      const mapped = changes.inodes.map((rec) => ({ rec, ino: localOrNew(rec.attr.ino, rec.attr.mode & S_IFMT) }));
      const touched: Ino[] = mapped.map((m) => m.ino);
      for (const { rec, ino } of mapped) {
        const a = rec.attr;
        this.st.applyAttr!.run({
          ino, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, rdev: a.rdev, size: a.size,
          as: a.atime.sec, ans: a.atime.nsec, ms: a.mtime.sec, mns: a.mtime.nsec, cs: a.ctime.sec, cns: a.ctime.nsec, target: rec.target ?? null,
        });
      }
      for (const { rec, ino } of mapped) {
        if (rec.entries) {
          this.st.deleteEntriesOf!.run(ino);
          for (const e of rec.entries) {
            const child = localOrNew(e.ino, e.type);
            this.st.insertDentry!.run(ino, e.name, child, e.type);
            if ((e.type & S_IFMT) === FileType.Directory) this.st.setParent!.run(ino, child);
          }
        }
        if (rec.extents) {
          this.st.dropInodeChunkRefs!.run({ ino });
          this.st.deleteExtentsOf!.run(ino);
          for (const e of rec.extents) {
            const id = Buffer.from(e.chunk, 'hex');
            // Its stored size here is 0: the chunk is the peer's until it is fetched.
            this.st.insertChunk!.run(id, e.chunkOffset + e.length, 0);
            this.st.unclaimChunk!.run(id);
            this.addExtent(ino, e.offset, e.length, id, e.chunkOffset);
          }
        }
        this.st.deleteXattrsOf!.run(ino);
        for (const [name, value] of rec.xattrs ?? []) this.st.setXattr!.run(ino, name, value);
      }
      for (const remote of changes.removed) {
        const ino = local(remote);
        if (ino === undefined || ino === v.root) continue;
        this.st.deleteEntriesTo!.run(ino);
        this.purge(ino);
        this.st.unmapRemote!.run(v.id, remote);
        touched.push(ino);
      }
      this.st.setSyncedTo!.run(changes.upTo, v.id);
      return touched;
    });
  }

  volumeHoldsChunk(volume: string, id: ChunkId): boolean {
    return this.st.volumeHoldsChunk!.get(Buffer.from(id, 'hex'), volume) !== undefined;
  }

  setReal(ino: Ino, real: boolean | undefined): void {
    this.getattr(ino); // ENOENT for an inode that is gone
    if (real === undefined) this.st.clearRealMark!.run(ino);
    else this.st.setRealMark!.run(ino, real ? 1 : 0);
  }

  /** Whether an inode is Real: its own mark, else its directory's, up to the volume root. */
  isReal(ino: Ino): { real: boolean; marked: boolean } {
    for (let at: Ino | undefined = ino, own = true; at !== undefined && at !== 0; own = false) {
      const mark = this.st.realMarkOf!.get(at) as number | undefined;
      if (mark !== undefined) return { real: mark === 1, marked: own };
      const dir = this.st.parentOfDir!.get(at) as Ino | null | undefined;
      const up: Ino | undefined = dir ?? (this.st.parentOfFile!.get(at) as Ino | undefined);
      at = up === at ? undefined : up;
    }
    return { real: false, marked: false };
  }

  realChunks(volume: string): ChunkHolding[] {
    const held = new Map<ChunkId, ChunkHolding>();
    for (const m of this.st.realMarksIn!.all(volume) as Array<{ ino: Ino; real: number }>) {
      if (m.real !== 1) continue;
      for (const c of this.st.chunksUnder!.all(m.ino) as ChunkRow[]) held.set(c.id.toString('hex'), holding(c));
    }
    return [...held.values()];
  }

  volumeChunks(volume: string): ChunkHolding[] {
    return (this.st.chunksOfVolume!.all(volume) as ChunkRow[]).map(holding);
  }

  keptByThisStore(id: ChunkId): boolean {
    return this.st.keptByThisStore!.get({ id: Buffer.from(id, 'hex') }) !== undefined;
  }

  setStoredSize(chunks: Array<{ id: ChunkId; storedSize: number }>): void {
    this.tx(() => {
      for (const c of chunks) this.st.setStoredSize!.run(c.storedSize, Buffer.from(c.id, 'hex'));
    });
  }

  removeVolume(name: string, force: boolean): void {
    this.tx(() => {
      const v = this.st.volumeByName!.get(name) as { id: number; root: number } | undefined;
      if (!v) throw new MetaError('ENOENT', `no volume ${name}`);
      if (!force && this.st.anyChild!.get(v.root)) throw new MetaError('ENOTEMPTY', `volume ${name} is not empty`);
      const inos = this.db.prepare('SELECT ino FROM inodes WHERE volume = ?').pluck().all(v.id) as number[];
      for (const ino of inos) this.purge(ino);
      this.db.prepare('DELETE FROM dentries WHERE parent IN (SELECT ino FROM inodes WHERE volume = ?)').run(v.id);
      this.db.prepare('DELETE FROM inodes WHERE volume = ?').run(v.id);
      this.db.prepare('DELETE FROM volumes WHERE id = ?').run(v.id);
      this.db.prepare('DELETE FROM attached_volumes WHERE volume = ?').run(v.id);
      this.db.prepare('DELETE FROM remote_inodes WHERE volume = ?').run(v.id);
    });
  }

  usage(volume?: string): Usage {
    let filter = '';
    const args: unknown[] = [];
    if (volume !== undefined) {
      const v = this.st.volumeByName!.get(volume) as { id: number } | undefined;
      if (!v) throw new MetaError('ENOENT', `no volume ${volume}`);
      filter = 'WHERE i.volume = ?';
      args.push(v.id);
    }
    const logical = this.db.prepare(`SELECT coalesce(sum(e.length), 0) FROM extents e JOIN inodes i ON i.ino = e.ino ${filter}`).pluck().get(...args) as number;
    const distinct = this.db.prepare(`SELECT coalesce(sum(c.size), 0) AS unique_, coalesce(sum(c.stored_size), 0) AS stored FROM chunks c WHERE c.id IN (SELECT e.chunk FROM extents e JOIN inodes i ON i.ino = e.ino ${filter})`).get(...args) as { unique_: number; stored: number };
    const inodes = this.db.prepare(`SELECT count(*) FROM inodes i ${filter}`).pluck().get(...args) as number;
    return { logicalBytes: logical, uniqueBytes: distinct.unique_, storedBytes: distinct.stored, inodes };
  }

  recoverVolume(name: string): number {
    return this.tx(() => {
      const v = this.st.volumeByName!.get(name) as { id: number } | undefined;
      if (!v) throw new MetaError('ENOENT', `no volume ${name}`);
      const orphans = this.db.prepare('SELECT ino FROM inodes WHERE volume = ? AND nlink = 0').pluck().all(v.id) as number[];
      for (const ino of orphans) this.purge(ino);
      return orphans.length;
    });
  }

  // ---- names ----

  lookup(parent: Ino, name: string): InodeAttr {
    const dir = this.dirRow(parent);
    if (name === '.') return toAttr(dir);
    if (name === '..') return this.getattr(dir.parent ?? parent);
    if (Buffer.byteLength(name) > NAME_MAX) throw new MetaError('ENAMETOOLONG');
    const d = this.st.dentry!.get(parent, name) as { ino: number } | undefined;
    if (!d) throw new MetaError('ENOENT');
    return this.getattr(d.ino);
  }

  getattr(ino: Ino): InodeAttr {
    return toAttr(this.row(ino));
  }

  setattr(ino: Ino, c: AttrChanges): InodeAttr {
    return this.tx(() => {
      const r = this.row(ino);
      const t = now();
      const set: string[] = [];
      const v: Record<string, number> = { ino };
      if (c.mode !== undefined) {
        set.push('mode = @mode');
        v.mode = (r.mode & S_IFMT) | (c.mode & 0o7777);
      }
      if (c.uid !== undefined) {
        set.push('uid = @uid');
        v.uid = c.uid;
      }
      if (c.gid !== undefined) {
        set.push('gid = @gid');
        v.gid = c.gid;
      }
      if (c.size !== undefined) {
        if (isDir(r.mode)) throw new MetaError('EISDIR');
        if ((r.mode & S_IFMT) !== FileType.Regular) throw new MetaError('EINVAL');
        if (c.size < r.size) this.punch(ino, c.size, Number.MAX_SAFE_INTEGER);
        set.push('size = @size', 'mtime_s = @ts', 'mtime_ns = @tns');
        v.size = c.size;
      }
      const atime = c.atime === 'now' ? t : c.atime;
      if (atime) {
        set.push('atime_s = @as', 'atime_ns = @ans');
        v.as = atime.sec;
        v.ans = atime.nsec;
      }
      const mtime = c.mtime === 'now' ? t : c.mtime;
      if (mtime) {
        set.push('mtime_s = @ms', 'mtime_ns = @mns');
        v.ms = mtime.sec;
        v.mns = mtime.nsec;
      }
      const ctime = c.ctime ?? t;
      set.push('ctime_s = @cs', 'ctime_ns = @cns');
      v.cs = ctime.sec;
      v.cns = ctime.nsec;
      v.ts = t.sec;
      v.tns = t.nsec;
      const columns = set.join(', ');
      let update = this.setattrStatements.get(columns);
      if (!update) this.setattrStatements.set(columns, (update = this.db.prepare(`UPDATE inodes SET ${columns} WHERE ino = @ino`)));
      update.run(v);
      return this.getattr(ino);
    });
  }

  create(parent: Ino, name: string, node: NewNode, caller: Caller, ahead?: CreateAhead): Made {
    return this.tx(() => {
      checkName(name);
      const dir = this.dirRow(parent);
      if (dir.nlink === 0) throw new MetaError('ENOENT', 'directory was removed');
      if (this.st.dentry!.get(parent, name)) throw new MetaError('EEXIST');
      const directory = node.type === FileType.Directory;
      const t = ahead?.time ?? now();
      const a = newInodeAttr(dir, node, caller, ahead?.ino ?? 0, t);
      const ino = this.newInode(dir.volume, a.mode, a.nlink, a.uid, a.gid, a.rdev, directory ? parent : null, node.target ?? null, t, ahead?.ino);
      this.st.insertDentry!.run(parent, name, ino, node.type);
      this.st.inheritXattrs!.run(ino, parent);
      if (directory) this.st.setNlink!.run(1, t.sec, t.nsec, parent);
      this.st.touchDir!.run(t.sec, t.nsec, t.sec, t.nsec, parent);
      return { attr: this.getattr(ino), dirs: [this.getattr(parent)] };
    });
  }

  link(ino: Ino, parent: Ino, name: string): Made {
    return this.tx(() => {
      checkName(name);
      const r = this.row(ino);
      if (isDir(r.mode)) throw new MetaError('EPERM', 'hard links to directories are not allowed');
      const dir = this.dirRow(parent);
      if (dir.nlink === 0) throw new MetaError('ENOENT', 'directory was removed');
      if (dir.volume !== r.volume) throw new MetaError('EINVAL', 'cannot link across volumes');
      if (this.st.dentry!.get(parent, name)) throw new MetaError('EEXIST');
      const t = now();
      this.st.insertDentry!.run(parent, name, ino, r.mode & S_IFMT);
      this.st.setNlink!.run(1, t.sec, t.nsec, ino);
      this.st.touchDir!.run(t.sec, t.nsec, t.sec, t.nsec, parent);
      return { attr: this.getattr(ino), dirs: [this.getattr(parent)] };
    });
  }

  unlink(parent: Ino, name: string, held?: Ino): Removed {
    return this.tx(() => {
      this.dirRow(parent);
      const d = this.st.dentry!.get(parent, name) as { ino: number; type: number } | undefined;
      if (!d) throw new MetaError('ENOENT');
      if (d.type === FileType.Directory) throw new MetaError('EISDIR');
      const t = now();
      this.st.deleteDentry!.run(parent, name);
      this.st.touchDir!.run(t.sec, t.nsec, t.sec, t.nsec, parent);
      return { ...this.dropName(d.ino, t, held), dirs: [this.getattr(parent)] };
    });
  }

  rmdir(parent: Ino, name: string, held?: Ino): Removed {
    return this.tx(() => {
      if (name === '.') throw new MetaError('EINVAL');
      if (name === '..') throw new MetaError('ENOTEMPTY');
      this.dirRow(parent);
      const d = this.st.dentry!.get(parent, name) as { ino: number; type: number } | undefined;
      if (!d) throw new MetaError('ENOENT');
      if (d.type !== FileType.Directory) throw new MetaError('ENOTDIR');
      if (this.st.anyChild!.get(d.ino)) throw new MetaError('ENOTEMPTY');
      const t = now();
      this.st.deleteDentry!.run(parent, name);
      this.st.setNlink!.run(-1, t.sec, t.nsec, parent);
      this.st.touchDir!.run(t.sec, t.nsec, t.sec, t.nsec, parent);
      if (d.ino === held) this.st.setNlink!.run(-this.row(d.ino).nlink, t.sec, t.nsec, d.ino);
      else this.purge(d.ino);
      return { ino: d.ino, orphaned: true, dirs: [this.getattr(parent)] };
    });
  }

  rename(parent: Ino, name: string, newParent: Ino, newName: string, flags: number, caller?: Caller, held?: Ino): Renamed {
    return this.tx(() => {
      checkName(newName);
      if (flags & RENAME_WHITEOUT && (flags & RENAME_EXCHANGE || !caller)) throw new MetaError('EINVAL');
      this.dirRow(parent);
      const to = this.dirRow(newParent);
      if (to.nlink === 0) throw new MetaError('ENOENT', 'directory was removed');
      const src = this.st.dentry!.get(parent, name) as { ino: number; type: number } | undefined;
      if (!src) throw new MetaError('ENOENT');
      const dst = this.st.dentry!.get(newParent, newName) as { ino: number; type: number } | undefined;
      const srcDir = src.type === FileType.Directory;
      const t = now();
      const done: Renamed = { moved: src.ino, dirs: [] };
      if (flags & RENAME_EXCHANGE) {
        if (!dst) throw new MetaError('ENOENT');
        const dstDir = dst.type === FileType.Directory;
        if (srcDir && this.isAncestor(src.ino, newParent)) throw new MetaError('EINVAL');
        if (dstDir && this.isAncestor(dst.ino, parent)) throw new MetaError('EINVAL');
        this.st.setDentryTarget!.run(dst.ino, dst.type, parent, name);
        this.st.setDentryTarget!.run(src.ino, src.type, newParent, newName);
        if (parent !== newParent) {
          if (srcDir) this.moveDir(src.ino, parent, newParent, t);
          if (dstDir) this.moveDir(dst.ino, newParent, parent, t);
        }
        this.st.touchCtime!.run(t.sec, t.nsec, dst.ino);
        done.exchanged = dst.ino;
      } else {
        if (dst) {
          if (flags & RENAME_NOREPLACE) throw new MetaError('EEXIST');
          if (dst.ino === src.ino) return done; // two names of one inode: POSIX says do nothing
          const dstDir = dst.type === FileType.Directory;
          if (dstDir && !srcDir) throw new MetaError('EISDIR');
          if (!dstDir && srcDir) throw new MetaError('ENOTDIR');
          if (srcDir && this.isAncestor(src.ino, newParent)) throw new MetaError('EINVAL');
          if (dstDir) {
            if (this.st.anyChild!.get(dst.ino)) throw new MetaError('ENOTEMPTY');
            this.st.deleteDentry!.run(newParent, newName);
            this.st.setNlink!.run(-1, t.sec, t.nsec, newParent);
            this.purge(dst.ino);
            done.replaced = { ino: dst.ino, orphaned: true };
          } else {
            this.st.deleteDentry!.run(newParent, newName);
            done.replaced = this.dropName(dst.ino, t, held);
          }
        } else if (srcDir && this.isAncestor(src.ino, newParent)) {
          throw new MetaError('EINVAL');
        }
        this.st.moveDentry!.run(newParent, newName, parent, name);
        if (srcDir && parent !== newParent) this.moveDir(src.ino, parent, newParent, t);
        if (flags & RENAME_WHITEOUT) this.create(parent, name, { type: FileType.CharDevice, perm: 0, rdev: 0 }, caller!);
      }
      this.st.touchCtime!.run(t.sec, t.nsec, src.ino);
      this.st.touchDir!.run(t.sec, t.nsec, t.sec, t.nsec, parent);
      if (newParent !== parent) this.st.touchDir!.run(t.sec, t.nsec, t.sec, t.nsec, newParent);
      done.dirs = parent === newParent ? [this.getattr(parent)] : [this.getattr(parent), this.getattr(newParent)];
      return done;
    });
  }

  readlink(ino: Ino): string {
    const r = this.row(ino);
    if (r.target === null) throw new MetaError('EINVAL', 'not a symlink');
    return r.target;
  }

  // Cookies: 1 after ".", 2 after "..", then rowid + 2.
  readdir(ino: Ino, cookie: number, limit: number, withAttrs = false): DirEntry[] {
    if (withAttrs) return unpackListing(this.readdirPacked(ino, cookie, limit));
    const dir = this.dirRow(ino);
    const out: DirEntry[] = [];
    if (cookie < 1 && out.length < limit) out.push({ name: '.', ino, type: FileType.Directory, cookie: 1 });
    if (cookie < 2 && out.length < limit) out.push({ name: '..', ino: dir.parent ?? ino, type: FileType.Directory, cookie: 2 });
    const rows = this.st.list!.all(ino, Math.max(0, cookie - 2), limit - out.length) as Array<{ rowid: number; name: string; ino: number; type: number }>;
    for (const r of rows) out.push({ name: r.name, ino: r.ino, type: r.type, cookie: r.rowid + 2 });
    return out;
  }

  /** readdir with attributes and every extended attribute, packed as it crosses to the host. */
  readdirPacked(ino: Ino, cookie: number, limit: number): PackedListing {
    const dir = this.dirRow(ino);
    const rows: ListedRow[] = [];
    const dot = (name: string, of: Ino, next: number): void => {
      const a = this.getattr(of);
      rows.push([next, FileType.Directory, of, a.mode, a.nlink, a.uid, a.gid, a.rdev, a.size, a.atime.sec, a.atime.nsec, a.mtime.sec, a.mtime.nsec, a.ctime.sec, a.ctime.nsec, name]);
    };
    if (cookie < 1 && rows.length < limit) dot('.', ino, 1);
    if (cookie < 2 && rows.length < limit) dot('..', dir.parent ?? ino, 2);
    rows.push(...(this.st.listWithAttrs!.all(ino, Math.max(0, cookie - 2), limit - rows.length) as ListedRow[]));
    const xattrs = rows.length === 0 ? [] : (this.st.xattrsOfMany!.all(JSON.stringify(rows.map((r) => r[2]))) as Array<{ ino: Ino; name: string; value: Buffer }>);
    return packListing(rows, xattrs.map((x) => [x.ino, x.name, x.value]));
  }

  // ---- inodes open without a name ----

  removeOrphan(ino: Ino): boolean {
    return this.tx(() => {
      const r = this.st.inode!.get(ino) as InodeRow | undefined;
      if (!r || r.nlink !== 0) return false;
      this.purge(ino);
      return true;
    });
  }

  // ---- contents ----

  extents(ino: Ino, offset: number, length: number): Extent[] {
    const end = offset + length;
    return (this.st.extentsNear!.all(ino, offset - MAX_EXTENT, end) as ExtentRow[])
      .filter((e) => e.offset + e.length > offset)
      .map((e) => ({ offset: e.offset, length: e.length, chunk: e.chunk.toString('hex'), chunkOffset: e.chunk_offset }));
  }

  writeExtents(ino: Ino, offset: number, length: number, extents: Extent[], chunks: ChunkInfo[], newSize: number, mtime: Time, pinToken: number): InodeAttr {
    return this.tx(() => {
      const r = this.row(ino);
      if ((r.mode & S_IFMT) !== FileType.Regular) throw new MetaError('EINVAL', 'not a regular file');
      const end = offset + length;
      let at = offset;
      for (const e of extents) {
        if (e.offset < at || e.offset + e.length > end || e.length <= 0) throw new MetaError('EINVAL', 'extents must be ordered, disjoint and inside the range');
        at = e.offset + e.length;
      }
      for (const c of chunks) {
        const id = Buffer.from(c.id, 'hex');
        this.st.insertChunk!.run(id, c.size, c.storedSize);
        // Only reachable when the caller skipped pinChunks: naming it would point at a deleted file.
        if ((this.st.chunkRefsOf!.get(id) as number) < 0) throw new MetaError('EINVAL', `chunk ${c.id} is being collected: pin it first`);
      }
      this.punch(ino, offset, end);
      for (const e of extents) this.addExtent(ino, e.offset, e.length, Buffer.from(e.chunk, 'hex'), e.chunkOffset);
      for (const c of chunks) this.st.unpin!.run(Buffer.from(c.id, 'hex'), pinToken);
      this.st.growAndTouch!.run(newSize, mtime.sec, mtime.nsec, mtime.sec, mtime.nsec, ino);
      return this.getattr(ino);
    });
  }

  unreferencedChunks(limit: number): ChunkInfo[] {
    return (this.st.unreferenced!.all(limit) as Array<{ id: Buffer; size: number; stored_size: number }>).map((c) => ({
      id: c.id.toString('hex'), size: c.size, storedSize: c.stored_size,
    }));
  }

  pinChunks(chunks: ChunkInfo[], token: number, untilMs: number): string[] {
    return this.tx(() => {
      const deleting: string[] = [];
      for (const c of chunks) {
        const id = Buffer.from(c.id, 'hex');
        this.st.insertChunk!.run(id, c.size, c.storedSize);
        if ((this.st.chunkRefsOf!.get(id) as number) < 0) deleting.push(c.id);
        else this.st.pin!.run(id, token, untilMs);
      }
      return deleting;
    });
  }

  unpinChunks(token: number): void {
    this.tx(() => this.st.unpinToken!.run(token));
  }

  claimUnreferenced(limit: number, nowMs: number): ChunkInfo[] {
    return this.tx(() => {
      this.st.dropLapsedPins!.run(nowMs);
      const rows = this.st.collectable!.all(nowMs, limit) as Array<{ id: Buffer; size: number; stored_size: number }>;
      for (const r of rows) this.st.claimChunk!.run(nowMs, r.id);
      return rows.map((c) => ({ id: c.id.toString('hex'), size: c.size, storedSize: c.stored_size }));
    });
  }

  staleClaims(claimedBeforeMs: number): string[] {
    return (this.st.staleClaims!.all(claimedBeforeMs) as Buffer[]).map((id) => id.toString('hex'));
  }

  forgetChunks(ids: string[]): void {
    this.tx(() => {
      for (const id of ids) this.st.forgetChunk!.run(Buffer.from(id, 'hex'));
    });
  }

  claimOrphans(ids: string[], nowMs: number): string[] {
    return this.tx(() => ids.filter((id) => this.st.claimOrphan!.run(Buffer.from(id, 'hex'), nowMs).changes > 0));
  }

  checkChunks(): { chunks: Array<ChunkInfo & { refs: number }>; refMismatches: Array<{ id: string; recorded: number; actual: number }> } {
    const chunks = (this.db.prepare('SELECT id, size, stored_size, refs FROM chunks').all() as Array<{ id: Buffer; size: number; stored_size: number; refs: number }>)
      .map((c) => ({ id: c.id.toString('hex'), size: c.size, storedSize: c.stored_size, refs: c.refs }));
    const refMismatches = (this.db.prepare(`
      SELECT c.id AS id, c.refs AS recorded, coalesce(n.actual, 0) AS actual FROM chunks c
      LEFT JOIN (SELECT chunk, count(*) AS actual FROM extents GROUP BY chunk) n ON n.chunk = c.id
      WHERE c.refs != coalesce(n.actual, 0)`).all() as Array<{ id: Buffer; recorded: number; actual: number }>)
      .map((m) => ({ id: m.id.toString('hex'), recorded: m.recorded, actual: m.actual }));
    return { chunks, refMismatches };
  }

  repairRefcounts(): number {
    return this.tx(() => {
      // Extents naming a chunk the table lacks get a row (sizes unknown: taken from the extents).
      this.db.exec(`INSERT INTO chunks (id, size, stored_size, refs)
        SELECT chunk, max(chunk_offset + length), 0, 0 FROM extents WHERE chunk NOT IN (SELECT id FROM chunks) GROUP BY chunk`);
      return this.db.prepare(`UPDATE chunks SET refs = (SELECT count(*) FROM extents e WHERE e.chunk = chunks.id)
        WHERE refs != (SELECT count(*) FROM extents e WHERE e.chunk = chunks.id)`).run().changes;
    });
  }

  filesUsing(id: string, limit: number): string[] {
    const inos = this.db.prepare('SELECT DISTINCT ino FROM extents WHERE chunk = ? LIMIT ?').pluck().all(Buffer.from(id, 'hex'), limit) as number[];
    return inos.map((ino) => this.pathOf(ino));
  }

  xattrOfFilesUsing(id: string, name: string): Array<Buffer | null> {
    return this.st.xattrOfFilesUsing!.all({ name, chunk: Buffer.from(id, 'hex') }) as Array<Buffer | null>;
  }

  /** "volume:/a/b" by one of the inode's names; "volume:<unlinked inode N>" when it has none. */
  private pathOf(ino: Ino): string {
    const r = this.row(ino);
    const volume = this.db.prepare('SELECT name, root FROM volumes WHERE id = ?').get(r.volume) as { name: string; root: number };
    const names: string[] = [];
    for (let cur = ino; cur !== volume.root; ) {
      const d = this.db.prepare('SELECT parent, name FROM dentries WHERE ino = ? LIMIT 1').get(cur) as { parent: number; name: string } | undefined;
      if (!d) return `${volume.name}:<unlinked inode ${ino}>`;
      names.unshift(d.name);
      cur = d.parent;
    }
    return `${volume.name}:/${names.join('/')}`;
  }

  // ---- extended attributes ----

  getxattr(ino: Ino, name: string): Buffer {
    this.row(ino);
    const v = this.st.xattr!.get(ino, name) as Buffer | undefined;
    if (!v) throw new MetaError('ENODATA');
    return v;
  }

  changesSince(volume: string, after: number, limit: number): VolumeChanges {
    // One read transaction: the page is one moment's state, whatever writers do meanwhile.
    return this.db.transaction((): VolumeChanges => {
      const v = this.st.volumeByName!.get(volume) as { id: number; root: number } | undefined;
      if (!v) throw new MetaError('ENOENT', `no volume ${volume}`);
      const rows = this.st.changedInodes!.all(v.id, after, limit + 1) as InodeRow[];
      let more = false;
      if (rows.length > limit) {
        more = true;
        // A change is never split: cut before the last change number when the extra row shares
        // it, unless the page holds nothing else; then that one change, however many inodes it
        // touched, is the page.
        const last = rows[limit - 1]!.changed;
        const before = rows.findIndex((r) => r.changed === last);
        if (rows[limit]!.changed !== last) rows.length = limit;
        else if (before > 0) rows.length = before;
        else rows.splice(0, rows.length, ...(this.st.inodesChangedAt!.all(v.id, last) as InodeRow[]));
      }
      const upTo = more ? rows[rows.length - 1]!.changed : parseInt(this.seq(), 10);
      const inodes = rows.map((r): IndexedInode => {
        const out: IndexedInode = { attr: toAttr(r), changed: r.changed };
        const type = r.mode & S_IFMT;
        if (type === FileType.Symlink && r.target !== null) out.target = r.target;
        if (type === FileType.Directory) out.entries = this.st.entriesOf!.all(r.ino) as Array<{ name: string; ino: Ino; type: number }>;
        if (type === FileType.Regular) {
          out.extents = (this.st.extentsOf!.all(r.ino) as ExtentRow[]).map((e) => ({ offset: e.offset, length: e.length, chunk: e.chunk.toString('hex'), chunkOffset: e.chunk_offset }));
        }
        const xattrs = this.st.xattrsOf!.all(r.ino) as Array<{ name: string; value: Buffer }>;
        if (xattrs.length > 0) out.xattrs = xattrs.map((x) => [x.name, x.value]);
        return out;
      });
      const removed = this.st.removedInodes!.all(v.id, after, upTo) as Ino[];
      return { upTo, root: v.root, more, inodes, removed };
    })();
  }

  listxattr(ino: Ino): string[] {
    this.row(ino);
    return this.st.xattrNames!.all(ino) as string[];
  }

  setxattr(ino: Ino, name: string, value: Uint8Array, flags: number): void {
    this.tx(() => {
      this.row(ino);
      const exists = this.st.xattr!.get(ino, name) !== undefined;
      if (flags & XATTR_CREATE && exists) throw new MetaError('EEXIST');
      if (flags & XATTR_REPLACE && !exists) throw new MetaError('ENODATA');
      this.st.setXattr!.run(ino, name, Buffer.from(value.buffer, value.byteOffset, value.length));
      const t = now();
      this.st.touchCtime!.run(t.sec, t.nsec, ino);
    });
  }

  removexattr(ino: Ino, name: string): void {
    this.tx(() => {
      this.row(ino);
      if (this.st.deleteXattr!.run(ino, name).changes === 0) throw new MetaError('ENODATA');
      const t = now();
      this.st.touchCtime!.run(t.sec, t.nsec, ino);
    });
  }

  // ---- durability ----

  /** One commit with synchronous=FULL fsyncs the WAL, and with it every commit before it. */
  sync(): void {
    this.db.pragma('synchronous = FULL');
    try {
      this.st.markSynced!.run(String(Date.now()));
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  close(): void {
    this.db.close();
  }

  // ---- copies (mirror.ts) ----

  /** "<n>:<tag>": n counts the changes made to this database, tag tells whose the last one was.
   * Two copies with one value have had the same changes (mirror.ts keeps them in step by it). */
  seq(): string {
    return this.st.seq!.get() as string;
  }

  changeCount(): number {
    return parseInt(this.seq(), 10);
  }

  /** Runs `fn` in one IMMEDIATE transaction that the operations it calls join, committed when it
   * returns. They take no savepoints of their own (which cost a copy of every page they change):
   * `fn` must throw when one fails, so that all of it is rolled back. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(() => {
      this.joined = true;
      try {
        return fn();
      } finally {
        this.joined = false;
      }
    }).immediate();
  }

  // ---- internals ----

  /** Every change goes through here, so that it counts in seq(). */
  private tx<T>(fn: () => T): T {
    const counted = (): T => {
      const result = fn();
      this.st.bumpSeq!.run(stamp?.tag ?? this.writer);
      return result;
    };
    return this.joined ? counted() : this.db.transaction(counted).immediate();
  }

  private row(ino: Ino): InodeRow {
    const r = this.st.inode!.get(ino) as InodeRow | undefined;
    if (!r) throw new MetaError('ENOENT');
    return r;
  }

  private dirRow(ino: Ino): InodeRow {
    const r = this.row(ino);
    if (!isDir(r.mode)) throw new MetaError('ENOTDIR');
    return r;
  }

  /** Inserts an inode numbered `ino`, or else the next number AUTOINCREMENT gives. */
  private newInode(volume: number, mode: number, nlink: number, uid: number, gid: number, rdev: number, parent: number | null, target: string | null, t: Time, ino?: Ino): number {
    const size = target === null ? 0 : Buffer.byteLength(target);
    return Number(this.st.insertInode!.run({ ino: ino ?? null, volume, mode, nlink, uid, gid, rdev, size, s: t.sec, ns: t.nsec, parent, target }).lastInsertRowid);
  }

  reserveInodes(count: number): Ino {
    if (!Number.isInteger(count) || count < 1) throw new MetaError('EINVAL', `cannot reserve ${count} inode numbers`);
    return this.tx(() => {
      // Every store has inodes (each volume's root), so AUTOINCREMENT has its row.
      const last = this.st.reserveInodes!.get(count) as number | undefined;
      if (last === undefined) throw new Error('no inode sequence in the database');
      return last - count + 1;
    });
  }

  /** One name of a non-directory is gone: the inode goes too when nothing else holds it. */
  private dropName(ino: Ino, t: Time, held: Ino | undefined): Removal {
    this.st.setNlink!.run(-1, t.sec, t.nsec, ino);
    const r = this.row(ino);
    if (r.nlink > 0) return { ino, orphaned: false };
    if (ino !== held) this.purge(ino);
    return { ino, orphaned: true };
  }

  private moveDir(ino: Ino, from: Ino, to: Ino, t: Time): void {
    this.st.setParent!.run(to, ino);
    this.st.setNlink!.run(-1, t.sec, t.nsec, from);
    this.st.setNlink!.run(1, t.sec, t.nsec, to);
  }

  /** Whether `ino` is `of` or one of its ancestors (a directory may not move into itself). */
  private isAncestor(ino: Ino, of: Ino): boolean {
    for (let cur = of; ; ) {
      if (cur === ino) return true;
      const r = this.row(cur);
      if (r.parent === null || r.parent === cur) return false;
      cur = r.parent;
    }
  }

  /** Removes the inode with its contents and attributes; its chunks lose their references. */
  private purge(ino: Ino): void {
    this.st.dropInodeChunkRefs!.run({ ino });
    this.st.clearRealMark!.run(ino);
    this.st.deleteExtentsOf!.run(ino);
    this.st.deleteXattrsOf!.run(ino);
    this.st.deleteInode!.run(ino);
  }

  /** Removes what lies in [start, end), keeping the parts of extents that stick out. */
  private punch(ino: Ino, start: number, end: number): void {
    const rows = this.st.extentsNear!.all(ino, start - MAX_EXTENT, end) as ExtentRow[];
    for (const e of rows) {
      const eEnd = e.offset + e.length;
      if (eEnd <= start) continue;
      this.st.deleteExtent!.run(ino, e.offset);
      this.st.chunkRefs!.run(-1, e.chunk);
      if (e.offset < start) this.addExtent(ino, e.offset, start - e.offset, e.chunk, e.chunk_offset);
      if (eEnd > end) this.addExtent(ino, end, eEnd - end, e.chunk, e.chunk_offset + (end - e.offset));
    }
  }

  private addExtent(ino: Ino, offset: number, length: number, chunk: Buffer, chunkOffset: number): void {
    this.st.insertExtent!.run(ino, offset, length, chunk, chunkOffset);
    this.st.chunkRefs!.run(1, chunk);
  }
}

interface ChunkRow {
  id: Buffer;
  bytes: number;
  stored: number;
}

function holding(c: ChunkRow): ChunkHolding {
  return { id: c.id.toString('hex'), bytes: c.bytes, storedSize: c.stored };
}
