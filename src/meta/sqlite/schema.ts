// The SQLite engine's schema, version 2. Chunk ids are stored as 32-byte BLOBs (half the size of
// hex); directory entries keep a rowid so readdir cookies stay valid while entries come and go.
//
// Version 2 numbers changes, for the index peers keep of a shared volume: each inode holds the
// number of the last change to it (`changed`, the database's change count, settings 'seq', as it
// will be once the change is counted), and a removed inode leaves its number behind in
// removed_inodes. So "what changed after N" is one indexed range of each. Triggers keep the
// numbers, so no operation can change an inode and forget to say so: its attributes, its
// contents (extents), its xattrs, and for a directory its entries (a directory's record for
// peers is its list of entries).

export const SCHEMA_VERSION = 2;

/** The longest a chunk can be: extents overlapping a range start at most this far before it. */
export const MAX_EXTENT = 4 * 1024 * 1024;

const REMOVED_INODES = `
-- Inodes removed, with the change that removed them: what a peer's index must drop.
CREATE TABLE IF NOT EXISTS removed_inodes (
  ino INTEGER PRIMARY KEY,
  volume INTEGER NOT NULL,
  changed INTEGER NOT NULL
);
`;

/** Volumes attached from a peer: where each comes from, and the peer's inode numbers mapped to
 * this store's (the peer's numbers are its own; this store's are never reused either). */
const ATTACHED = `
CREATE TABLE IF NOT EXISTS attached_volumes (
  volume INTEGER PRIMARY KEY,
  peer TEXT NOT NULL,
  remote_volume TEXT NOT NULL,
  -- the peer's change number this store's copy of the index is complete up to
  synced_to INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS remote_inodes (
  volume INTEGER NOT NULL,
  remote INTEGER NOT NULL,
  ino INTEGER NOT NULL,
  PRIMARY KEY (volume, remote)
) WITHOUT ROWID;
`;

/** The number the change being made will have: one more than the count so far (the engine counts
 * a change when it ends: engine.ts tx()). */
const THIS_CHANGE = "(SELECT CAST(value AS INTEGER) + 1 FROM settings WHERE key = 'seq')";

/** Indexes and triggers of the change numbers (every version-2 database, new or upgraded). */
const CHANGE_NUMBERING = `
CREATE INDEX IF NOT EXISTS inodes_by_change ON inodes (volume, changed);
CREATE INDEX IF NOT EXISTS removed_by_change ON removed_inodes (volume, changed);
CREATE TRIGGER IF NOT EXISTS inode_made AFTER INSERT ON inodes BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = NEW.ino;
END;
-- Only updates of the inode's own columns: the trigger's own update of 'changed' does not fire it.
CREATE TRIGGER IF NOT EXISTS inode_changed
AFTER UPDATE OF volume, mode, nlink, uid, gid, rdev, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, parent, target ON inodes BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = NEW.ino;
END;
CREATE TRIGGER IF NOT EXISTS inode_removed AFTER DELETE ON inodes BEGIN
  INSERT OR REPLACE INTO removed_inodes (ino, volume, changed) VALUES (OLD.ino, OLD.volume, ${THIS_CHANGE});
END;
CREATE TRIGGER IF NOT EXISTS entry_added AFTER INSERT ON dentries BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = NEW.parent;
END;
CREATE TRIGGER IF NOT EXISTS entry_removed AFTER DELETE ON dentries BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = OLD.parent;
END;
CREATE TRIGGER IF NOT EXISTS entry_changed AFTER UPDATE ON dentries BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino IN (OLD.parent, NEW.parent);
END;
CREATE TRIGGER IF NOT EXISTS extent_added AFTER INSERT ON extents BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = NEW.ino;
END;
CREATE TRIGGER IF NOT EXISTS extent_removed AFTER DELETE ON extents BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = OLD.ino;
END;
CREATE TRIGGER IF NOT EXISTS xattr_added AFTER INSERT ON xattrs BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = NEW.ino;
END;
CREATE TRIGGER IF NOT EXISTS xattr_changed AFTER UPDATE ON xattrs BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = NEW.ino;
END;
CREATE TRIGGER IF NOT EXISTS xattr_removed AFTER DELETE ON xattrs BEGIN
  UPDATE inodes SET changed = ${THIS_CHANGE} WHERE ino = OLD.ino;
END;
`;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS volumes (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  root INTEGER NOT NULL,
  created_s INTEGER NOT NULL,
  created_ns INTEGER NOT NULL
);

-- AUTOINCREMENT: inode numbers are never reused, so kernel and peer caches can trust them.
CREATE TABLE IF NOT EXISTS inodes (
  ino INTEGER PRIMARY KEY AUTOINCREMENT,
  volume INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  nlink INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  rdev INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0,
  atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL,
  mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
  ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
  -- directories: the parent, for ".."
  parent INTEGER,
  -- symlinks: the target
  target TEXT,
  -- the change that last touched it (see above)
  changed INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS dentries (
  parent INTEGER NOT NULL,
  name TEXT NOT NULL,
  ino INTEGER NOT NULL,
  type INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS dentries_by_name ON dentries (parent, name);
-- (parent, rowid): readdir walks a directory in cookie order.
CREATE INDEX IF NOT EXISTS dentries_by_parent ON dentries (parent);

CREATE TABLE IF NOT EXISTS xattrs (
  ino INTEGER NOT NULL,
  name TEXT NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (ino, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS extents (
  ino INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  chunk BLOB NOT NULL,
  chunk_offset INTEGER NOT NULL,
  PRIMARY KEY (ino, offset)
) WITHOUT ROWID;
-- The files using a chunk: to name them (a chunk lost beyond repair) and to ask what they need of
-- it (a shared chunk keeps the strongest policy of its files).
CREATE INDEX IF NOT EXISTS extents_by_chunk ON extents (chunk);

-- refs: how many extents name the chunk; -1 while gc deletes it from the pool.
-- claimed_at (ms since 1970): when gc claimed it (refs -1).
CREATE TABLE IF NOT EXISTS chunks (
  id BLOB PRIMARY KEY,
  size INTEGER NOT NULL,
  stored_size INTEGER NOT NULL,
  refs INTEGER NOT NULL,
  claimed_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_unreferenced ON chunks (refs) WHERE refs = 0;

-- Real and Unreal files of attached volumes: 'orbit pin' marks an inode Real (1), 'orbit unpin'
-- Unreal (0); an unmarked inode is as its directory is. A Real file's chunks are kept in the pool.
CREATE TABLE IF NOT EXISTS real_marks (
  ino INTEGER PRIMARY KEY,
  real INTEGER NOT NULL
) WITHOUT ROWID;

-- A commit storing a chunk pins it (by the commit's token) until its extents name it: gc leaves
-- pinned chunks alone. Pins lapse at "until" (a crashed writer's pins do not hold forever).
CREATE TABLE IF NOT EXISTS chunk_pins (
  chunk BLOB NOT NULL,
  token INTEGER NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (chunk, token)
) WITHOUT ROWID;

` + REMOVED_INODES + ATTACHED + CHANGE_NUMBERING;

/** From version 1: the column and table the change numbers need (CHANGE_NUMBERING follows, as for
 * every database). Every inode there is counts as changed by change 1, the first a change can be
 * numbered: a peer's first index (after 0) takes them all. */
export const UPGRADE_FROM_1 = `
ALTER TABLE inodes ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
UPDATE inodes SET changed = 1;
` + REMOVED_INODES + ATTACHED;
