// `orbit id`, `orbit peer …` and `orbit up`: this store's identity, the peers it knows, and the
// daemon that keeps them connected. Peer commands change <home>/peers.json, which a running
// daemon re-reads within a second; `peer list` asks the daemon for live state when one runs.
import { InvalidArgumentError, type Command } from 'commander';
import { connectDaemon } from '../daemon/control.js';
import { Daemon, DEFAULT_CACHE_BYTES, DEFAULT_FETCH_TIMEOUT_MS, formatAddress, SOFTWARE } from '../daemon/daemon.js';
import { readSavedStates, type PeerState } from '../peer/household.js';
import { loadOrCreateIdentity } from '../peer/identity.js';
import { parsePeerId, PeerIdError, shortPeerId, type PeerId } from '../peer/peer-id.js';
import { findPeer, parseAddress, PeersError, readPeers, updatePeers } from '../peer/peers.js';
import { formatDuration, parseDuration, parseListen, parseSize } from './arguments.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { CliError, formatBytes, printJson, printTable } from './output.js';
import { Store } from '../store/store.js';

function peerIdArgument(text: string): PeerId {
  try {
    return parsePeerId(text);
  } catch (err) {
    if (err instanceof PeerIdError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}

function addressArgument(text: string): string {
  try {
    return formatAddress(parseAddress(text));
  } catch (err) {
    if (err instanceof PeersError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function nameArgument(text: string): string {
  if (!NAME.test(text)) throw new InvalidArgumentError(`a peer's name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, not ${JSON.stringify(text)}`);
  return text;
}

/** "3 s ago", "5 min ago", "2 h ago", "4 d ago". */
function ago(ms: number | undefined, now: number): string {
  if (ms === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129_600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}

/** Every peer's state: live from the daemon, else as peers.json and the last daemon left them. */
async function peerStates(home: string): Promise<{ live: boolean; peers: PeerState[] }> {
  const daemon = await connectDaemon(home, SOFTWARE);
  if (daemon) {
    try {
      const reply = await daemon.request('peers', {});
      return { live: true, peers: reply.header.peers as PeerState[] };
    } finally {
      await daemon.close();
    }
  }
  const saved = await readSavedStates(home);
  const peers = (await readPeers(home)).peers.map((p) => ({
    id: p.id,
    name: p.name,
    ...(p.address ? { address: p.address } : {}),
    connected: false,
    ...(saved[p.id]?.lastSeen ? { lastSeen: saved[p.id]!.lastSeen } : {}),
    bytesIn: saved[p.id]?.bytesIn ?? 0,
    bytesOut: saved[p.id]?.bytesOut ?? 0,
  }));
  return { live: false, peers };
}

export function addPeerCommands(program: Command): void {
  program
    .command('id')
    .description("this store's peer ID, to give to the peers that should know it")
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: HomeOptions & { json?: boolean }) =>
      withStore(opts.home, async (store) => {
        const identity = await loadOrCreateIdentity(store.home);
        if (opts.json) printJson({ id: identity.peerId });
        else console.log(identity.peerId);
      }),
    );

  const peer = program.command('peer').description('the peers this store knows: add, list, remove');

  peer
    .command('add')
    .description('know a peer by its ID (from its `orbit id`); with --address, dial it there')
    .argument('<id>', 'its peer ID', peerIdArgument)
    .option('--address <host:port>', 'where it listens (a peer without one is "deaf": it dials in)', addressArgument)
    .option('--name <name>', 'a name for it (default: the first group of its ID)', nameArgument)
    .addOption(homeOption())
    .action((id: PeerId, opts: HomeOptions & { address?: string; name?: string }) =>
      withStore(opts.home, async (store) => {
        const self = await loadOrCreateIdentity(store.home);
        if (id === self.peerId) throw new CliError('that is this store\'s own ID');
        const verb = await updatePeers(store.home, (file) => {
          const name = opts.name ?? shortPeerId(id);
          const clash = file.peers.find((p) => p.name === name && p.id !== id);
          if (clash) throw new CliError(`the name ${name} is taken by peer ${shortPeerId(clash.id)}: choose another with --name`);
          const known = file.peers.find((p) => p.id === id);
          if (known) {
            if (opts.name) known.name = opts.name;
            if (opts.address) known.address = opts.address;
            return 'updated';
          }
          file.peers.push({ id, name, ...(opts.address ? { address: opts.address } : {}), addedAt: new Date().toISOString() });
          return 'added';
        });
        const rec = findPeer(await readPeers(store.home), id);
        console.log(`${verb} peer ${rec.name} (${id})${rec.address ? `, dialed at ${rec.address}` : ', deaf: it dials in'}`);
      }),
    );

  peer
    .command('list')
    .description('the known peers: connected or not, last seen, bytes in and out')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: HomeOptions & { json?: boolean }) =>
      withStore(opts.home, async (store) => {
        const { live, peers } = await peerStates(store.home);
        if (opts.json) return printJson({ daemon: live, peers });
        if (peers.length === 0) return console.log("no peers: add one with 'orbit peer add ID'");
        const now = Date.now();
        printTable([
          ['NAME', 'ID', 'ADDRESS', 'STATE', 'LAST SEEN', 'IN', 'OUT', 'CHUNKS FETCHED'],
          ...peers.map((p) => [
            p.name, p.id, p.address ?? '(deaf)',
            p.connected ? `connected (${p.direction === 'out' ? 'dialed' : 'dialed in'})` : live ? 'not connected' : 'no daemon',
            p.connected ? 'now' : ago(p.lastSeen, now), formatBytes(p.bytesIn), formatBytes(p.bytesOut),
            p.chunksFetched === undefined ? '-' : `${p.chunksFetched}${p.corruptChunks ? ` (${p.corruptChunks} corrupt: tried last)` : ''}`,
          ]),
        ]);
      }),
    );

  peer
    .command('remove')
    .description('forget a peer: it is disconnected, refused from now on, and no longer shared with')
    .argument('<peer>', 'its ID, name, or the start of its ID')
    .addOption(homeOption())
    .action((ref: string, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        const removed = await updatePeers(store.home, (file) => {
          const p = findPeer(file, ref);
          file.peers = file.peers.filter((x) => x.id !== p.id);
          for (const v of Object.keys(file.shares)) file.shares[v] = file.shares[v]!.filter((x) => x !== p.id);
          return p;
        });
        console.log(`removed peer ${removed.name} (${removed.id})`);
      }),
    );

  program
    .command('share')
    .description('offer a volume to a peer: it appears in that peer\'s `orbit volume list`, to attach')
    .argument('<volume>', 'a volume of this store')
    .requiredOption('--with <peer>', 'the peer: its ID, name, or the start of its ID')
    .addOption(homeOption())
    .action((volume: string, opts: HomeOptions & { with: string }) =>
      withStore(opts.home, async (store) => {
        if (!(await store.meta.volumes()).some((v) => v.name === volume)) throw new CliError(`no volume ${volume} in the store at ${store.home}`);
        const peer = await updatePeers(store.home, (file) => {
          const p = findPeer(file, opts.with);
          const now = file.shares[volume] ?? [];
          if (!now.includes(p.id)) file.shares[volume] = [...now, p.id];
          return p;
        });
        console.log(`volume ${volume} is shared with ${peer.name} (${peer.id})`);
      }),
    );

  program
    .command('unshare')
    .description('stop offering a volume to a peer (to every peer without --with)')
    .argument('<volume>', 'a volume of this store')
    .option('--with <peer>', 'only this peer')
    .addOption(homeOption())
    .action((volume: string, opts: HomeOptions & { with?: string }) =>
      withStore(opts.home, async (store) => {
        const left = await updatePeers(store.home, (file) => {
          if (opts.with === undefined) delete file.shares[volume];
          else {
            const p = findPeer(file, opts.with);
            file.shares[volume] = (file.shares[volume] ?? []).filter((x) => x !== p.id);
            if (file.shares[volume]!.length === 0) delete file.shares[volume];
          }
          return (file.shares[volume] ?? []).map((id) => file.peers.find((p) => p.id === id)?.name ?? shortPeerId(id));
        });
        console.log(left.length > 0 ? `volume ${volume} is still shared with ${left.join(', ')}` : `volume ${volume} is shared with no peer`);
      }),
    );

  program
    .command('up')
    .description('run the daemon: keep the peers connected and serve them, run jobs, answer commands (until SIGINT/SIGTERM)')
    .option('--listen <host:port>', 'listen for peers there (0.0.0.0:7717, say); without it the store is "deaf": it only dials out', parseListen)
    .option('--cache-size <size>', `the bound of the cache of chunks fetched from peers (default ${formatBytes(DEFAULT_CACHE_BYTES)})`, parseSize)
    .option('--fetch-timeout <duration>', `how long a read waits for a chunk from peers before it fails with EIO (default ${formatDuration(DEFAULT_FETCH_TIMEOUT_MS)})`, parseDuration)
    .addOption(homeOption())
    .action(async (opts: HomeOptions & { listen?: { host: string; port: number }; cacheSize?: number; fetchTimeout?: number }) => {
      const store = await Store.open(opts.home);
      let daemon: Daemon;
      try {
        daemon = await Daemon.start(store, { listen: opts.listen, cacheBytes: opts.cacheSize, fetchTimeoutMs: opts.fetchTimeout });
      } catch (err) {
        await store.close();
        throw err;
      }
      const stop = (): void => void daemon.stop();
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      console.log(`orbit daemon for ${store.home}: peer ${daemon.record.peerId}${daemon.record.listen ? `, listening at ${daemon.record.listen}` : ', deaf (dials out only)'}`);
      await daemon.stopped;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await store.close();
    });
}
