// The peers a store knows: <home>/peers.json, the household as this store sees it. A peer is its
// ID (from its public key: identity.ts), a name for people, and, for a listening peer, an
// address to dial; a "deaf" peer has none and only dials in. What this store shares with whom
// lives here too. The file changes under a lock and is replaced whole (as pool.json is); the
// daemon re-reads it when it changes.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { replaceFile } from '../durable-file.js';
import { LockedError, withFileLock } from '../file-lock.js';
import { isPeerId, parsePeerId, shortPeerId, type PeerId } from './peer-id.js';

export const PEERS_FILE = 'peers.json';
const PEERS_FORMAT = 1;

export interface PeerRecord {
  id: PeerId;
  /** For people; unique among the store's peers. */
  name: string;
  /** HOST:PORT of a listening peer; absent for a deaf one. */
  address?: string;
  addedAt: string;
}

export interface PeersFile {
  format: number;
  peers: PeerRecord[];
  /** Volume name → the peers it is shared with. */
  shares: Record<string, PeerId[]>;
}

export class PeersError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeersError';
  }
}

export async function readPeers(home: string): Promise<PeersFile> {
  const file = path.join(home, PEERS_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: PEERS_FORMAT, peers: [], shares: {} };
    throw new PeersError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let parsed: PeersFile;
  try {
    parsed = JSON.parse(text) as PeersFile;
  } catch (err) {
    throw new PeersError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed.format !== PEERS_FORMAT) throw new PeersError(`${file} has format ${parsed.format}; this Orbit reads ${PEERS_FORMAT}`);
  for (const p of parsed.peers) if (!isPeerId(p.id)) throw new PeersError(`${file} names a peer with an invalid ID ${JSON.stringify(p.id)}`);
  parsed.shares ??= {};
  return parsed;
}

/** When peers.json last changed (0: never written). */
export async function peersVersion(home: string): Promise<number> {
  return (await stat(path.join(home, PEERS_FILE)).catch(() => undefined))?.mtimeMs ?? 0;
}

/** Runs `change` on the current file under <home>/peers.lock and writes what it leaves. */
export async function updatePeers<T>(home: string, change: (peers: PeersFile) => T | Promise<T>): Promise<T> {
  try {
    return await withFileLock(path.join(home, 'peers.lock'), 'the list of peers', async () => {
      const peers = await readPeers(home);
      const result = await change(peers);
      await replaceFile(path.join(home, PEERS_FILE), JSON.stringify(peers, null, 2) + '\n', 0o600);
      return result;
    });
  } catch (err) {
    if (err instanceof LockedError) throw new PeersError(err.message);
    throw err;
  }
}

/** The peer `ref` names: its ID (in any form parsePeerId takes), its name, or the start of its
 * ID when only one peer's starts so. */
export function findPeer(peers: PeersFile, ref: string): PeerRecord {
  const byName = peers.peers.find((p) => p.name === ref);
  if (byName) return byName;
  if (isPeerId(ref)) {
    const id = parsePeerId(ref);
    const found = peers.peers.find((p) => p.id === id);
    if (found) return found;
    throw new PeersError(`peer ${shortPeerId(id)} is not known here: add it with 'orbit peer add ${id}'`);
  }
  const start = ref.toUpperCase();
  const matches = start.length >= 4 ? peers.peers.filter((p) => p.id.startsWith(start)) : [];
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw new PeersError(`${ref} is the start of ${matches.length} peers' IDs: give more of it, or a name`);
  throw new PeersError(`no peer named ${JSON.stringify(ref)} (see 'orbit peer list')`);
}

/** "HOST:PORT" checked: a port from 1 to 65535, a host (IPv6 in brackets). */
export function parseAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new PeersError(`expected HOST:PORT such as 192.168.1.20:7717, not ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2]!, port };
}
