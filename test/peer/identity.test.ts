// Peer IDs and identities: the check characters against Syncthing's own test vectors, the
// formatting against a Syncthing device ID and a key's ID computed elsewhere, the tolerance of
// parsing (case, dashes, spaces, 0/1/8) and its intolerance of every single mistyped character;
// an identity's files (modes, a key others can read, a certificate of another key) and its
// certificate as Node and OpenSSL read it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { CertificateError, peerIdOfCertificate, selfSignedCertificate } from '../../src/peer/certificate.js';
import { createIdentity, identityFiles, IdentityError, loadIdentity, loadOrCreateIdentity } from '../../src/peer/identity.js';
import { isPeerId, luhnCheckCharacter, parsePeerId, peerIdFromDigest, peerIdOf, PeerIdError, shortPeerId } from '../../src/peer/peer-id.js';
import { tempDir } from '../helpers.js';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const OPENSSL = '/usr/bin/openssl';

/** RFC 4648 base32 decoding, for the Syncthing vector (a device ID's 52 characters). */
function fromBase32(text: string): Buffer {
  let bits = 0n;
  for (const c of text) bits = (bits << 5n) | BigInt(BASE32.indexOf(c));
  const whole = (text.length * 5) >> 3;
  const extra = BigInt(text.length * 5 - whole * 8);
  return Buffer.from((bits >> extra).toString(16).padStart(whole * 2, '0'), 'hex');
}

const randomPeerId = (): string => peerIdOf(generateKeyPairSync('ed25519').publicKey);

describe('peer IDs', () => {
  it("computes check characters as Syncthing's luhn tests expect", () => {
    // lib/protocol/luhn_test.go: TestGenerate, TestValidate, TestInvalidString.
    assert.equal(luhnCheckCharacter('abcdef', 'abcdef'), 'e');
    assert.equal(luhnCheckCharacter('7992739871', '0123456789'), '3');
    assert.notEqual(luhnCheckCharacter('abcdef', 'abcdef'), 'd');
    assert.throws(() => luhnCheckCharacter('7992739871', 'ABC'), PeerIdError);
  });

  it('formats a digest as Syncthing formats a device ID', () => {
    // lib/protocol/deviceid_test.go: the 52 base32 characters of a device ID, and its text.
    const digest = fromBase32('P56IOI7MZJNU2IQGDREYDM2MGTMGL3BXNPQ6W5BTBBZ4TJXZWICQ');
    assert.equal(digest.length, 32);
    assert.equal(peerIdFromDigest(digest), 'P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2');
  });

  it('derives the ID of a known key: SHA-256 of the raw key, base32, check characters', () => {
    // RFC 8032 7.1 test 1's public key. The ID was computed apart from Orbit, with Python's
    // hashlib and base64 and a transcription of Syncthing's luhn32.
    const raw = Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex');
    const expected = 'EH7DDX5-BKSRGCK-YTL7BKA-I36SE4E-NXX3KLN-K7ELKS5-YQ57PI7-4XEG4QG';
    assert.equal(peerIdOf(raw), expected);
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
    assert.equal(peerIdOf(key), expected);
    assert.equal(shortPeerId(expected), 'EH7DDX5');
    assert.equal(peerIdOf(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 'MMG42KL-GYQZWNM-EISKREL-XMS3J7W-2BFJE4O-MW3FSFO-LYG4FQG-6XCDOQS');
  });

  it('refuses what is not an Ed25519 public key', () => {
    assert.throws(() => peerIdOf(Buffer.alloc(31)), PeerIdError);
    assert.throws(() => peerIdOf(generateKeyPairSync('ed25519').privateKey), PeerIdError);
    assert.throws(() => peerIdOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey), PeerIdError);
  });

  it('parses its own IDs back, in any case, with any dashes and spaces', () => {
    for (let i = 0; i < 20; i++) {
      const id = randomPeerId();
      assert.match(id, /^([A-Z2-7]{7}-){7}[A-Z2-7]{7}$/);
      assert.equal(parsePeerId(id), id);
      assert.ok(isPeerId(id));
      const bare = id.replace(/-/g, '');
      assert.equal(parsePeerId(bare.toLowerCase()), id);
      assert.equal(parsePeerId(` ${bare.slice(0, 10)}--${bare.slice(10, 30)} ${bare.slice(30)}\n`), id);
      assert.equal(parsePeerId(id.replace(/-/g, ' ')), id);
    }
    // Syncthing's own format cases that carry check digits.
    const syncthing = 'P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2';
    for (const text of [
      'P56IOI-7MZJNU2Y-IQGDR-EYDM2M-GTI-MGL3-BXNPQ6-W5BM-TBB-Z4TJXZ-WICQ2',
      'P56IOI7 MZJNU2Y IQGDREY DM2MGTI MGL3BXN PQ6W5BM TBBZ4TJ XZWICQ2',
      'P56IOI7MZJNU2YIQGDREYDM2MGTIMGL3BXNPQ6W5BMTBBZ4TJXZWICQ2',
      'P561017MZJNU2YIQGDREYDM2MGTIMGL3BXNPQ6W5BMT88Z4TJXZWICQ2',
      'p56ioi7mzjnu2yiqgdreydm2mgtimgl3bxnpq6w5bmtbbz4tjxzwicq2',
      'p561017mzjnu2yiqgdreydm2mgtimgl3bxnpq6w5bmt88z4tjxzwicq2',
    ]) {
      assert.equal(parsePeerId(text), syncthing, text);
    }
  });

  it('reads 0, 1 and 8 as O, I and B', () => {
    let checked = 0;
    while (checked < 10) {
      const id = randomPeerId();
      if (!/[OIB]/.test(id)) continue;
      assert.equal(parsePeerId(id.replace(/O/g, '0').replace(/I/g, '1').replace(/B/g, '8')), id);
      checked++;
    }
  });

  it('catches every single mistyped character', () => {
    for (let round = 0; round < 3; round++) {
      const id = randomPeerId();
      const chars = id.replace(/-/g, '');
      for (let i = 0; i < chars.length; i++) {
        for (const typo of BASE32) {
          if (typo === chars[i]) continue;
          const text = chars.slice(0, i) + typo + chars.slice(i + 1);
          assert.throws(
            () => parsePeerId(text),
            (err: Error) => err instanceof PeerIdError && err.message.includes(`wrong check character in group ${2 * Math.floor(i / 14) + 2}`),
            `${typo} at ${i} in ${id}`,
          );
          assert.ok(!isPeerId(text));
        }
      }
    }
  });

  it('says what is wrong with a text that is not an ID', () => {
    const id = randomPeerId();
    const bare = id.replace(/-/g, '');
    assert.throws(() => parsePeerId(bare.slice(1)), /has 55 letters and digits; a peer ID has 56/);
    assert.throws(() => parsePeerId(bare + 'A'), /has 57 letters and digits/);
    assert.throws(() => parsePeerId(''), PeerIdError);
    // The 52 characters of Syncthing's older IDs, without check characters, are not taken.
    assert.throws(() => parsePeerId('P56IOI7MZJNU2IQGDREYDM2MGTMGL3BXNPQ6W5BTBBZ4TJXZWICQ'), /has 52/);
    assert.throws(() => parsePeerId(`9${bare.slice(1)}`), /has "9" in group 1, which no peer ID has/);
    assert.throws(() => parsePeerId(`${bare.slice(0, 50)}!${bare.slice(51)}`), /"!" in group 8/);
    for (const bad of [bare.slice(1), `9${bare.slice(1)}`]) {
      assert.throws(
        () => parsePeerId(bad),
        (err: Error) => err.name === 'PeerIdError' && !err.message.includes('\n'),
      );
    }
  });
});

describe('identity', () => {
  let dir: string;
  let remove: () => Promise<void>;
  before(async () => ({ dir, remove } = await tempDir('identity')));
  after(() => remove());
  let n = 0;
  const newHome = (): string => path.join(dir, `home${n++}`);

  it('is created with a key only its owner can read, and loaded again as the same peer', async () => {
    const home = newHome();
    const made = await createIdentity(home);
    const files = identityFiles(home);
    assert.equal(files.dir, path.join(home, 'identity'));
    assert.equal((await stat(files.key)).mode & 0o777, 0o600);
    assert.equal((await stat(files.cert)).mode & 0o777, 0o644 & ~process.umask());
    assert.deepEqual((await readdir(files.dir)).sort(), ['cert.pem', 'key.pem'], 'no temporary file is left');
    assert.equal(made.peerId, peerIdOf(made.publicKey));
    assert.match(made.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal(await readFile(files.key, 'utf8'), made.keyPem);
    assert.equal(await readFile(files.cert, 'utf8'), made.certPem);

    const loaded = await loadIdentity(home);
    assert.equal(loaded.peerId, made.peerId);
    assert.equal(loaded.certPem, made.certPem);
    assert.ok(loaded.privateKey.equals(made.privateKey));
    assert.equal((await loadOrCreateIdentity(home)).peerId, made.peerId);
  });

  it('refuses to replace an existing key', async () => {
    const home = newHome();
    const made = await createIdentity(home);
    await assert.rejects(createIdentity(home), (err: Error) => err instanceof IdentityError && /exists already: refusing to replace/.test(err.message));
    assert.equal((await loadIdentity(home)).peerId, made.peerId);
  });

  it('has no identity to load in a new home', async () => {
    await assert.rejects(loadIdentity(newHome()), (err: Error) => err instanceof IdentityError && /no identity at .*identity: .*key\.pem does not exist/.test(err.message));
  });

  it('is made once when several make it at once', async () => {
    const home = newHome();
    const all = await Promise.all(Array.from({ length: 6 }, () => loadOrCreateIdentity(home)));
    const loaded = await loadIdentity(home);
    for (const identity of all) assert.equal(identity.peerId, loaded.peerId);
  });

  it('refuses a key others can read', async () => {
    const home = newHome();
    await createIdentity(home);
    const { key } = identityFiles(home);
    await chmod(key, 0o644);
    await assert.rejects(loadIdentity(home), (err: Error) => {
      assert.ok(err instanceof IdentityError);
      assert.equal(err.message, `permissions 0644 for ${key} are too open: others could take this store's identity; chmod 600 it`);
      return true;
    });
    await assert.rejects(loadOrCreateIdentity(home), /too open/);
    await chmod(key, 0o640);
    await assert.rejects(loadIdentity(home), /permissions 0640/);
    await chmod(key, 0o400);
    await loadIdentity(home);
  });

  it('refuses a certificate of another key, and makes a missing one again', async () => {
    const home = newHome();
    const made = await createIdentity(home);
    const other = await createIdentity(newHome());
    const { cert } = identityFiles(home);
    await writeFile(cert, other.certPem);
    await assert.rejects(loadIdentity(home), (err: Error) => {
      assert.ok(err instanceof IdentityError);
      assert.match(err.message, new RegExp(`cert\\.pem is the certificate of peer ${shortPeerId(other.peerId)}, but .*key\\.pem is the key of peer ${shortPeerId(made.peerId)}: remove it`));
      return true;
    });
    await writeFile(cert, 'not a certificate');
    await assert.rejects(loadIdentity(home), /cert\.pem is not a certificate/);

    await rm(cert);
    const again = await loadIdentity(home);
    assert.equal(again.peerId, made.peerId);
    assert.notEqual(again.certPem, made.certPem, 'a new certificate (another serial)');
    assert.equal(await readFile(cert, 'utf8'), again.certPem);
    assert.equal(peerIdOfCertificate(new X509Certificate(again.certPem)), made.peerId);
  });

  it('refuses a key that is not Ed25519', async () => {
    const home = newHome();
    await createIdentity(home);
    const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    await writeFile(identityFiles(home).key, ecKey, { mode: 0o600 });
    await assert.rejects(loadIdentity(home), /holds an ec key; an identity is an Ed25519 key/);
  });
});

describe('certificate', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const id = peerIdOf(publicKey);
  const pem = selfSignedCertificate(privateKey, publicKey, id);

  it('is read by Node: self-signed, CN the peer ID, never expiring', () => {
    const cert = new X509Certificate(pem);
    assert.ok(cert.verify(publicKey));
    assert.equal(cert.subject, `CN=${id}`);
    assert.equal(cert.issuer, `CN=${id}`);
    assert.ok(cert.checkPrivateKey(privateKey));
    assert.equal(cert.publicKey.asymmetricKeyType, 'ed25519');
    assert.equal(new Date(cert.validTo).toISOString(), '9999-12-31T23:59:59.000Z');
    const from = new Date(cert.validFrom).getTime();
    assert.ok(from < Date.now() - 23 * 3600_000 && from > Date.now() - 25 * 3600_000, cert.validFrom);
    // Random serials: enough of them that one whose first byte would be zero (1 in 128 with a
    // top bit merely cleared) is among them.
    for (let i = 0; i < 400; i++) {
      const serial = i === 0 ? cert.serialNumber : new X509Certificate(selfSignedCertificate(privateKey, publicKey, id)).serialNumber;
      assert.ok(/^[4-7][0-9A-F]{31}$/.test(serial), `serial ${serial} is positive, 16 bytes`);
    }
    assert.notEqual(new X509Certificate(selfSignedCertificate(privateKey, publicKey, id)).serialNumber, cert.serialNumber);
    assert.equal(peerIdOfCertificate(cert), id);
    assert.equal(peerIdOfCertificate(cert.raw), id);
  });

  it('names its key, not its CN', () => {
    const other = generateKeyPairSync('ed25519');
    const liar = selfSignedCertificate(other.privateKey, other.publicKey, id);
    assert.equal(new X509Certificate(liar).subject, `CN=${id}`);
    assert.equal(peerIdOfCertificate(new X509Certificate(liar)), peerIdOf(other.publicKey));
  });

  it('is refused for a key pair that is not one, or not Ed25519', () => {
    const other = generateKeyPairSync('ed25519');
    assert.throws(() => selfSignedCertificate(privateKey, other.publicKey, id), CertificateError);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.throws(() => selfSignedCertificate(ec.privateKey, ec.publicKey, id), CertificateError);
    assert.throws(() => peerIdOfCertificate(Buffer.from('garbage')), CertificateError);
  });

  it('is read by OpenSSL', { skip: !existsSync(OPENSSL) && 'no openssl' }, async () => {
    const { dir, remove } = await tempDir('cert');
    try {
      const file = path.join(dir, 'cert.pem');
      await writeFile(file, pem);
      const { stdout } = await promisify(execFile)(OPENSSL, ['x509', '-noout', '-text', '-in', file]);
      assert.match(stdout, /Version: 3 \(0x2\)/);
      assert.match(stdout, /Signature Algorithm: ED25519/);
      assert.ok(stdout.includes(`Subject: CN = ${id}`), stdout);
      assert.ok(stdout.includes(`Issuer: CN = ${id}`), stdout);
      assert.match(stdout, /Not After : Dec 31 23:59:59 9999 GMT/);
      // Self-signed and without extensions, it still verifies as its own trust anchor, strictly.
      const verified = await promisify(execFile)(OPENSSL, ['verify', '-x509_strict', '-CAfile', file, file]);
      assert.match(verified.stdout, /: OK/);
    } finally {
      await remove();
    }
  });

  it('of another kind of key names no peer', { skip: !existsSync(OPENSSL) && 'no openssl' }, async () => {
    const { dir, remove } = await tempDir('cert');
    try {
      const key = path.join(dir, 'key.pem');
      const file = path.join(dir, 'cert.pem');
      await promisify(execFile)(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', file, '-subj', `/CN=${id}`, '-days', '1']);
      const cert = new X509Certificate(await readFile(file));
      assert.throws(() => peerIdOfCertificate(cert), (err: Error) => err instanceof CertificateError && /of an ec key; a peer's is of an Ed25519 key/.test(err.message));
    } finally {
      await remove();
    }
  });
});
