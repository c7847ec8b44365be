// A store's identity: its Ed25519 key pair (the peer ID, peer-id.ts, is derived from it).
//
// On disk, under <home>/identity/: key.pem, the private key (PKCS#8 PEM), created 0600 and
// refused when others can read it, as ssh refuses such a key; and cert.pem, a self-signed
// certificate of the key (certificate.ts) that TLS shows to peers, made again if it is missing.
// The key is written with an exclusive link, so two processes creating an identity at once end
// up with one key, never one each or half of one.
import { createPrivateKey, createPublicKey, generateKeyPair, KeyObject, randomUUID, X509Certificate } from 'node:crypto';
import { link, mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { replaceFile } from '../durable-file.js';
import { peerIdOfCertificate, selfSignedCertificate } from './certificate.js';
import { peerIdOf, shortPeerId, type PeerId } from './peer-id.js';

/** A key or certificate under <home>/identity that cannot be used as it is. */
export class IdentityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdentityError';
  }
}


export interface Identity {
  peerId: PeerId;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** key.pem's text: PKCS#8 PEM of the private key (for TLS). */
  keyPem: string;
  /** cert.pem's text: the self-signed certificate TLS shows to peers. */
  certPem: string;
}

export const IDENTITY_DIR = 'identity';

export function identityFiles(home: string): { dir: string; key: string; cert: string } {
  const dir = path.join(home, IDENTITY_DIR);
  return { dir, key: path.join(dir, 'key.pem'), cert: path.join(dir, 'cert.pem') };
}

const generateEd25519 = (): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> => promisify(generateKeyPair)('ed25519');

/** The store's identity; throws IdentityError when there is none, or it cannot be used. */
export async function loadIdentity(home: string): Promise<Identity> {
  const files = identityFiles(home);
  const keyPem = await readKey(files.key);
  if (keyPem === undefined) throw new IdentityError(`no identity at ${files.dir}: ${files.key} does not exist`);
  return identityWithKey(files, keyPem);
}

/** Makes the store a new identity. Refuses to replace a key there is already: that would make
 * the store another peer, unknown to its household. */
export async function createIdentity(home: string): Promise<Identity> {
  const files = identityFiles(home);
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  const exists = new IdentityError(`${files.key} exists already: refusing to replace the identity this store has`);
  if ((await readKey(files.key)) !== undefined) throw exists;
  const { privateKey, publicKey } = await generateEd25519();
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  if (!(await createFile(files.key, keyPem, 0o600))) throw exists;
  const peerId = peerIdOf(publicKey);
  // Any cert.pem there is that of a key gone (the key is written first, the certificate second).
  const certPem = selfSignedCertificate(privateKey, publicKey, peerId);
  await replaceFile(files.cert, certPem, 0o644);
  return { peerId, privateKey, publicKey, keyPem, certPem };
}

/** The store's identity, made on first use. Of two processes making it at once, both end up
 * with the one whose key was written first. */
export async function loadOrCreateIdentity(home: string): Promise<Identity> {
  const files = identityFiles(home);
  const keyPem = await readKey(files.key);
  if (keyPem !== undefined) return identityWithKey(files, keyPem);
  try {
    return await createIdentity(home);
  } catch (err) {
    if (err instanceof IdentityError && (await readKey(files.key)) !== undefined) return loadIdentity(home);
    throw err;
  }
}

/** key.pem's text, undefined if there is none; refuses a key others may read. */
async function readKey(file: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IdentityError(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new IdentityError(`${file} is not a file`);
    if ((info.mode & 0o077) !== 0) {
      throw new IdentityError(`permissions ${(info.mode & 0o777).toString(8).padStart(4, '0')} for ${file} are too open: others could take this store's identity; chmod 600 it`);
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

async function identityWithKey(files: { key: string; cert: string }, keyPem: string): Promise<Identity> {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (err) {
    throw new IdentityError(`${files.key} does not hold a PEM private key: ${(err as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new IdentityError(`${files.key} holds an ${privateKey.asymmetricKeyType} key; an identity is an Ed25519 key`);
  const publicKey = createPublicKey(privateKey);
  const peerId = peerIdOf(publicKey);

  let certPem: string;
  try {
    certPem = await readFile(files.cert, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new IdentityError(`cannot read ${files.cert}: ${(err as Error).message}`);
    // The certificate only restates the key: a lost one is made again, and the store stays who
    // it is.
    certPem = selfSignedCertificate(privateKey, publicKey, peerId);
    await replaceFile(files.cert, certPem, 0o644);
    return { peerId, privateKey, publicKey, keyPem, certPem };
  }
  const remedy = `remove it to have it made again from ${path.basename(files.key)}`;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new IdentityError(`${files.cert} is not a certificate (${(err as Error).message}): ${remedy}`);
  }
  let certPeer: PeerId;
  try {
    certPeer = peerIdOfCertificate(cert);
  } catch (err) {
    throw new IdentityError(`${files.cert}: ${(err as Error).message}: ${remedy}`);
  }
  // A mismatch is not mended silently: it means one of the two files was replaced by hand.
  if (certPeer !== peerId) throw new IdentityError(`${files.cert} is the certificate of peer ${shortPeerId(certPeer)}, but ${files.key} is the key of peer ${shortPeerId(peerId)}: ${remedy}`);
  if (!cert.verify(publicKey)) throw new IdentityError(`${files.cert} has a bad signature: ${remedy}`);
  return { peerId, privateKey, publicKey, keyPem, certPem };
}

/** Writes a file that must not exist yet, whole or not at all: a synced temporary file (with
 * `mode` from its creation, so the key is never readable by others) linked to its name, which
 * fails if the name exists. False if it does. */
async function createFile(file: string, data: string, mode: number): Promise<boolean> {
  const temp = `${file}.${randomUUID()}.tmp`;
  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await link(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(temp, { force: true });
  }
  const dir = await open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return true;
}
