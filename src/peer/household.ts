// The household as this store's daemon lives it: a connection to each known peer, kept up. A
// listening store accepts peers that dial it; for each known peer with an address, it dials,
// and after a failure dials again with exponential backoff (1 s doubling to a minute, jittered so
// that two stores restarted together do not dial in lockstep). A deaf peer has no address: it
// dials us, and the one connection serves requests both ways.
//
// Two peers that dial each other at once end up with two connections; each side keeps the one
// dialed by the smaller peer ID, so both keep the same one. Every session gets the handlers
// registered with handle() and onNotify(): what the layers above serve to peers.
import { EventEmitter } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { replaceFile } from '../durable-file.js';
import type { Logger } from '../log.js';
import { sleep } from '../sleep.js';
import type { Identity } from './identity.js';
import { shortPeerId, type PeerId } from './peer-id.js';
import { parseAddress, peersVersion, readPeers, type PeerRecord, type PeersFile } from './peers.js';
import { PeerSession, type NotifyListener, type RequestHandler } from './session.js';
import { dialPeer, listenForPeers, type PeerListener } from './transport.js';

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 60_000;
/** peers.json is looked at this often for peers added or removed. */
const RELOAD_MS = 1000;
/** What `orbit peer list` shows when no daemon runs is saved this often. */
const SAVE_STATE_MS = 5000;
const DIAL_TIMEOUT_MS = 10_000;

/** A peer as `orbit peer list` shows it. */
export interface PeerState {
  id: PeerId;
  name: string;
  address?: string;
  connected: boolean;
  /** Who dialed the connection up now. */
  direction?: 'in' | 'out';
  /** ms since 1970 when a frame last came from it (this run or an earlier one). */
  lastSeen?: number;
  /** Over every connection to it, this run and earlier ones. */
  bytesIn: number;
  bytesOut: number;
  /** Why the last dial failed, while not connected. */
  lastError?: string;
  /** Chunks this store fetched from it (this run of the daemon), and of them those that failed
   * their check (the daemon adds these). */
  chunksFetched?: number;
  corruptChunks?: number;
}

interface Link {
  session: PeerSession;
  direction: 'in' | 'out';
}

/** What is kept of a peer across connections and runs (<home>/run/peers-state.json). */
interface Tally {
  lastSeen?: number;
  bytesIn: number;
  bytesOut: number;
  lastError?: string;
}

export interface HouseholdOptions {
  /** Where to listen for peers; absent: deaf (only dials out). */
  listen?: { host: string; port: number };
  software: string;
}

export class Household extends EventEmitter<{ connected: [PeerId, PeerSession]; disconnected: [PeerId]; reloaded: [PeersFile] }> {
  private peers = new Map<PeerId, PeerRecord>();
  private readonly links = new Map<PeerId, Link>();
  private readonly tallies = new Map<PeerId, Tally>();
  private readonly dialers = new Map<PeerId, AbortController>();
  private readonly handlers = new Map<string, RequestHandler>();
  private readonly notifyListeners = new Map<string, NotifyListener>();
  private listener: PeerListener | undefined;
  private peersSeen = -1;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(
    readonly home: string,
    readonly identity: Identity,
    private readonly log: Logger,
    private readonly options: HouseholdOptions,
  ) {
    super();
  }

  get id(): PeerId {
    return this.identity.peerId;
  }

  /** Where peers can dial this store, when it listens. */
  get address(): { host: string; port: number } | undefined {
    return this.listener?.address;
  }

  /** Serves `method` to every peer (register before start()). */
  handle(method: string, handler: RequestHandler): void {
    this.handlers.set(method, handler);
  }

  onNotify(topic: string, listener: NotifyListener): void {
    this.notifyListeners.set(topic, listener);
  }

  async start(): Promise<void> {
    await this.loadTallies();
    await this.reload();
    if (this.options.listen) {
      this.listener = await listenForPeers({
        identity: this.identity,
        host: this.options.listen.host,
        port: this.options.listen.port,
        isKnown: (id) => this.peers.has(id),
        onPeer: (socket, id) => void this.adopt(socket, id, 'in'),
        onRefused: (id, remote, reason) => this.log.warn({ peer: id, remote, reason }, 'refused a connection'),
      });
    }
    this.timers.push(setInterval(() => void this.reload().catch((err: unknown) => this.log.warn({ err }, 'cannot re-read the peers')), RELOAD_MS));
    this.timers.push(setInterval(() => void this.saveTallies().catch((err: unknown) => this.log.warn({ err }, 'cannot save the peers\' state')), SAVE_STATE_MS));
    for (const t of this.timers) t.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    for (const d of this.dialers.values()) d.abort();
    await this.listener?.close();
    await Promise.all([...this.links.values()].map((l) => l.session.close('the daemon is stopping')));
    await this.saveTallies();
  }

  /** The live session with `id`, if connected. */
  session(id: PeerId): PeerSession | undefined {
    return this.links.get(id)?.session;
  }

  connectedPeers(): PeerId[] {
    return [...this.links.keys()];
  }

  states(): PeerState[] {
    return [...this.peers.values()].map((p) => {
      const link = this.links.get(p.id);
      const t = this.tallyNow(p.id);
      return {
        id: p.id,
        name: p.name,
        ...(p.address ? { address: p.address } : {}),
        connected: link !== undefined,
        ...(link ? { direction: link.direction } : {}),
        ...(t.lastSeen ? { lastSeen: t.lastSeen } : {}),
        bytesIn: t.bytesIn,
        bytesOut: t.bytesOut,
        ...(!link && t.lastError ? { lastError: t.lastError } : {}),
      };
    });
  }

  /** Re-reads peers.json when it changed: dials peers added, drops peers removed. */
  async reload(): Promise<void> {
    const version = await peersVersion(this.home);
    if (version === this.peersSeen || this.stopped) return;
    this.peersSeen = version;
    const file = await readPeers(this.home);
    const next = new Map(file.peers.map((p) => [p.id, p]));
    for (const [id, old] of this.peers) {
      const now = next.get(id);
      if (now && now.address === old.address) continue;
      this.dialers.get(id)?.abort();
      this.dialers.delete(id);
      if (!now) {
        this.log.info({ peer: shortPeerId(id) }, 'peer removed: disconnecting');
        void this.links.get(id)?.session.close('the peer was removed');
      }
    }
    this.peers = next;
    for (const p of next.values()) if (p.address && !this.dialers.has(p.id)) this.keepDialing(p);
    this.emit('reloaded', file);
  }

  private keepDialing(peer: PeerRecord): void {
    const controller = new AbortController();
    this.dialers.set(peer.id, controller);
    const { signal } = controller;
    const { host, port } = parseAddress(peer.address!);
    void (async () => {
      let failures = 0;
      while (!signal.aborted && !this.stopped) {
        const link = this.links.get(peer.id);
        if (link) {
          await Promise.race([link.session.closed, aborted(signal)]);
          continue;
        }
        try {
          const socket = await dialPeer({ identity: this.identity, host, port, expect: peer.id, timeoutMs: DIAL_TIMEOUT_MS, signal });
          failures = 0;
          await this.adopt(socket, peer.id, 'out');
        } catch (err) {
          if (signal.aborted) break;
          failures++;
          this.tally(peer.id).lastError = (err as Error).message;
          const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures - 1, 16));
          const wait = backoff / 2 + Math.random() * (backoff / 2);
          this.log.debug({ peer: shortPeerId(peer.id), err, waitMs: Math.round(wait) }, 'cannot reach a peer: trying again later');
          await sleep(wait, signal);
        }
      }
    })();
  }

  /** Opens a session on a connection authenticated as `id`, and keeps it unless one is up already. */
  private async adopt(socket: import('node:tls').TLSSocket, id: PeerId, direction: 'in' | 'out'): Promise<void> {
    let session: PeerSession;
    try {
      session = await PeerSession.open(socket, { localPeer: this.id, software: this.options.software, logger: this.log });
    } catch (err) {
      socket.destroy();
      this.tally(id).lastError = (err as Error).message;
      this.log.warn({ peer: shortPeerId(id), err }, 'cannot open a session');
      return;
    }
    // The hello's name is only a claim; the key behind the TLS handshake is the proof.
    if (session.remoteHello.peer !== id) {
      this.log.warn({ peer: shortPeerId(id), claimed: session.remoteHello.peer }, 'a peer claimed another ID than its key\'s: dropped');
      await session.close('the hello names another peer than the certificate');
      return;
    }
    if (this.stopped || !this.peers.has(id)) {
      await session.close('not serving this peer');
      return;
    }
    const existing = this.links.get(id);
    if (existing) {
      // The connection dialed by the smaller ID stays, on both sides.
      const dialerOf = (d: 'in' | 'out'): PeerId => (d === 'out' ? this.id : id);
      const keepNew = dialerOf(direction) < dialerOf(existing.direction);
      if (!keepNew) {
        await session.close('a connection is up already');
        return;
      }
      this.links.delete(id);
      void existing.session.close('replaced by the connection both sides keep');
    }
    for (const [method, handler] of this.handlers) session.handle(method, handler);
    for (const [topic, listener] of this.notifyListeners) session.onNotify(topic, listener);
    this.links.set(id, { session, direction });
    delete this.tally(id).lastError;
    this.log.info({ peer: shortPeerId(id), direction }, 'peer connected');
    this.emit('connected', id, session);
    void session.closed.then((err) => {
      if (this.links.get(id)?.session !== session) return;
      this.links.delete(id);
      const t = this.tally(id);
      t.bytesIn += session.bytesIn;
      t.bytesOut += session.bytesOut;
      t.lastSeen = Math.max(t.lastSeen ?? 0, session.lastSeen);
      if (err) t.lastError = err.message;
      this.log.info({ peer: shortPeerId(id), reason: err?.message }, 'peer disconnected');
      this.emit('disconnected', id);
    });
  }

  private tally(id: PeerId): Tally {
    let t = this.tallies.get(id);
    if (!t) {
      t = { bytesIn: 0, bytesOut: 0 };
      this.tallies.set(id, t);
    }
    return t;
  }

  /** The tally with the live session's bytes added. */
  private tallyNow(id: PeerId): Tally {
    const t = this.tally(id);
    const s = this.links.get(id)?.session;
    if (!s) return t;
    return { ...t, bytesIn: t.bytesIn + s.bytesIn, bytesOut: t.bytesOut + s.bytesOut, lastSeen: Math.max(t.lastSeen ?? 0, s.lastSeen) };
  }

  private stateFile(): string {
    return path.join(this.home, 'run', 'peers-state.json');
  }

  private async loadTallies(): Promise<void> {
    const saved = await readSavedStates(this.home);
    for (const [id, t] of Object.entries(saved)) this.tallies.set(id, { bytesIn: t.bytesIn, bytesOut: t.bytesOut, ...(t.lastSeen ? { lastSeen: t.lastSeen } : {}) });
  }

  private async saveTallies(): Promise<void> {
    const out: Record<string, Tally> = {};
    for (const id of this.peers.keys()) out[id] = this.tallyNow(id);
    await mkdir(path.dirname(this.stateFile()), { recursive: true });
    await replaceFile(this.stateFile(), JSON.stringify(out) + '\n');
  }
}

/** What the last daemon saved of each peer (for `orbit peer list` while none runs). */
export async function readSavedStates(home: string): Promise<Record<PeerId, { lastSeen?: number; bytesIn: number; bytesOut: number }>> {
  try {
    return JSON.parse(await readFile(path.join(home, 'run', 'peers-state.json'), 'utf8')) as Record<PeerId, Tally>;
  } catch {
    return {};
  }
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
