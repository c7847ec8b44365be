// The two ends of the plain TLS stream the remote-read bench holds Orbit to, each run in its own
// process by bench/peer/tls-stream.ts (so that neither shares an event loop with the other or
// with the bench):
//
//   tls-stream-peer.ts server KEY CERT FILE   listens on 127.0.0.1 (a free port, printed as
//       "listening PORT"); to every client that asks (one byte), sends FILE in 1 MiB reads, then
//       ends the connection.
//   tls-stream-peer.ts client PORT CERT       connects with TLS 1.3, asks, discards what comes,
//       and prints one JSON line: bytes, seconds from asking to the first 4 KiB and to the end,
//       and the negotiated protocol and cipher.
//
// TLS 1.3 with Node's defaults on both ends, as Orbit's peer connections are: the stream is what
// the same runtime and the same record layer can move over loopback with no protocol on top.
import { createReadStream, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';

/** As the bench's readers read: 1 MiB at a time. */
const READ_BYTES = 1024 * 1024;
const FIRST_BYTES = 4096;

function serve(keyFile: string, certFile: string, file: string): void {
  const server = tls.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile), minVersion: 'TLSv1.3' }, (socket) => {
    socket.once('data', () => {
      pipeline(createReadStream(file, { highWaterMark: READ_BYTES }), socket).catch((err: Error) => {
        console.error(`tls stream server: ${err.message}`);
        socket.destroy();
      });
    });
    socket.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    console.log(`listening ${typeof address === 'object' && address ? address.port : '?'}`);
  });
}

function fetch(port: number, certFile: string): void {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: readFileSync(certFile),
    minVersion: 'TLSv1.3',
    // The certificate is the server's own, made for this run: its name is beside the point.
    checkServerIdentity: () => undefined,
  });
  socket.once('secureConnect', () => {
    let bytes = 0;
    let firstByteSeconds: number | undefined;
    const asked = performance.now();
    socket.on('data', (data: Buffer) => {
      bytes += data.length;
      if (firstByteSeconds === undefined && bytes >= FIRST_BYTES) firstByteSeconds = (performance.now() - asked) / 1000;
    });
    socket.once('end', () => {
      const seconds = (performance.now() - asked) / 1000;
      console.log(JSON.stringify({ bytes, firstByteSeconds, seconds, protocol: socket.getProtocol(), cipher: socket.getCipher().name }));
      socket.end();
    });
    socket.write('g');
  });
  socket.on('error', (err) => {
    console.error(`tls stream client: ${err.message}`);
    process.exit(1);
  });
}

const [role, ...args] = process.argv.slice(2);
if (role === 'server' && args.length === 3) serve(args[0]!, args[1]!, args[2]!);
else if (role === 'client' && args.length === 2) fetch(Number(args[0]), args[1]!);
else {
  console.error('usage: see the comment at the top of bench/peer/tls-stream-peer.ts');
  process.exit(2);
}
