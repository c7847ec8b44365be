// The SQLite engine's schema, version 1. Chunk ids are stored as 32-byte BLOBs (half the size of
// hex); directory entries keep a rowid so readdir cookies stay valid while entries come and go.

export const SCHEMA_VERSION = 1;

/** The longest a chunk can be: extents overlapping a range start at most this far before it. */
export const MAX_EXTENT = 4 * 1024 * 1024;

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
  target TEXT
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

-- A commit storing a chunk pins it (by the commit's token) until its extents name it: gc leaves
-- pinned chunks alone. Pins lapse at "until" (a crashed writer's pins do not hold forever).
CREATE TABLE IF NOT EXISTS chunk_pins (
  chunk BLOB NOT NULL,
  token INTEGER NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (chunk, token)
) WITHOUT ROWID;
`;
