// The certificate a store shows its peers in TLS: X.509 v3, self-signed, of its Ed25519 key.
//
// Nobody vouches for it: a peer is trusted because its key is the one pinned in the household
// (its peer ID is derived from the key, identity.ts), never because of who signed its
// certificate or what name it carries. So the certificate holds only what TLS needs to carry
// the key: subject = issuer = CN=<peer id> (a courtesy for people reading it with openssl), a
// random serial, a validity that never ends (RFC 5280 4.1.2.5: 99991231235959Z), no extensions
// (OpenSSL and Node accept it without any), signed with the key itself.
//
// It is written with the small DER encoder below rather than a library: the structure is
// fixed and a few dozen lines, and Node can sign (crypto.sign) and parse (X509Certificate) but
// not build one.
import { randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { peerIdOf, rawPublicKey, type PeerId } from './peer-id.js';

/** A certificate that is not one a peer can be known by. */
export class CertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateError';
  }
}

// DER (X.690): every value is tag, length, contents; lengths are definite and minimal.
const TAG = {
  integer: 0x02,
  bitString: 0x03,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

function tlv(tag: number, contents: Uint8Array): Buffer {
  const n = contents.length;
  let length: number[];
  if (n < 0x80) {
    length = [n];
  } else {
    length = [];
    for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) length.unshift(rest & 0xff);
    length.unshift(0x80 | length.length);
  }
  return Buffer.concat([Buffer.from([tag, ...length]), contents]);
}

const sequence = (...items: Uint8Array[]): Buffer => tlv(TAG.sequence, Buffer.concat(items));
const set = (...items: Uint8Array[]): Buffer => tlv(TAG.set, Buffer.concat(items));
/** [n] EXPLICIT: a constructed, context-specific tag around a whole value. */
const explicit = (n: number, value: Uint8Array): Buffer => tlv(0xa0 | n, value);
/** A bit string of whole bytes (no unused bits). */
const bitString = (bytes: Uint8Array): Buffer => tlv(TAG.bitString, Buffer.concat([Buffer.from([0]), bytes]));

/** A non-negative INTEGER from its big-endian magnitude: leading zeros dropped, and a zero byte
 * put back in front when the top bit is set, which would make it negative. */
function unsignedInteger(value: Uint8Array | number): Buffer {
  const magnitude: number[] = [];
  if (typeof value === 'number') {
    for (let rest = value; rest > 0; rest = Math.floor(rest / 256)) magnitude.unshift(rest & 0xff);
  } else {
    magnitude.push(...value);
  }
  while (magnitude[0] === 0) magnitude.shift();
  if (magnitude.length === 0 || magnitude[0]! & 0x80) magnitude.unshift(0);
  return tlv(TAG.integer, Buffer.from(magnitude));
}

/** An OBJECT IDENTIFIER from its dotted form: the first two arcs as one (40a + b), every arc in
 * base 128, most significant first, the high bit set on all but the last byte. */
function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [];
  for (const arc of [40 * arcs[0]! + arcs[1]!, ...arcs.slice(2)]) {
    const digits = [arc & 0x7f];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) digits.unshift(0x80 | (rest & 0x7f));
    out.push(...digits);
  }
  return tlv(TAG.oid, Buffer.from(out));
}

/** PrintableString when the text fits its alphabet (a peer ID does), else UTF8String. */
const directoryString = (text: string): Buffer =>
  /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text) ? tlv(TAG.printableString, Buffer.from(text, 'ascii')) : tlv(TAG.utf8String, Buffer.from(text, 'utf8'));

/** RFC 5280 4.1.2.5: UTCTime (two-digit year) for 1950 to 2049, GeneralizedTime otherwise;
 * both to the second, in UTC ("Z"). */
function time(date: Date): Buffer {
  const digits = date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:T]/g, '');
  const year = date.getUTCFullYear();
  return year >= 1950 && year < 2050 ? tlv(TAG.utcTime, Buffer.from(digits.slice(2), 'ascii')) : tlv(TAG.generalizedTime, Buffer.from(digits, 'ascii'));
}

const OID_COMMON_NAME = '2.5.4.3';
/** id-Ed25519 (RFC 8410): the signature algorithm, with no parameters. */
const ED25519_ALGORITHM = sequence(oid('1.3.101.112'));
/** RFC 5280's "no well-defined expiration date". */
const NEVER = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));
/** Clocks of a household disagree; a certificate made now must already be valid on a machine
 * whose clock is behind. */
const BACKDATE_MS = 24 * 3600 * 1000;

/** A self-signed certificate (PEM) of an Ed25519 key pair, subject and issuer CN=`commonName`. */
export function selfSignedCertificate(privateKey: KeyObject, publicKey: KeyObject, commonName: string): string {
  if (privateKey.asymmetricKeyType !== 'ed25519' || publicKey.asymmetricKeyType !== 'ed25519') throw new CertificateError('a peer certificate is made for an Ed25519 key pair');
  const name = sequence(set(sequence(oid(OID_COMMON_NAME), directoryString(commonName))));
  // 16 bytes, 126 of them random bits: the top bit cleared (positive) and the next one set, so that
  // no leading zero byte is dropped: always 16 octets, within RFC 5280's 20.
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const tbs = sequence(
    explicit(0, unsignedInteger(2)), // version: v3
    unsignedInteger(serial),
    ED25519_ALGORITHM,
    name, // issuer
    sequence(time(new Date(Date.now() - BACKDATE_MS)), time(NEVER)),
    name, // subject
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign(null, tbs, privateKey);
  if (!verify(null, tbs, publicKey, signature)) throw new CertificateError('the private key and the public key given for a certificate are not one pair');
  const der = sequence(tbs, ED25519_ALGORITHM, bitString(signature));
  const lines = der.toString('base64').match(/.{1,64}/g)!;
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** The peer ID of the key a certificate carries (never of the name it claims); throws
 * CertificateError for a certificate of anything but an Ed25519 key. */
export function peerIdOfCertificate(cert: X509Certificate | Uint8Array): PeerId {
  let parsed: X509Certificate;
  try {
    parsed = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  } catch (err) {
    throw new CertificateError(`not an X.509 certificate: ${(err as Error).message}`);
  }
  const key = parsed.publicKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new CertificateError(`the certificate is of an ${key.asymmetricKeyType ?? 'unknown'} key; a peer's is of an Ed25519 key`);
  return peerIdOf(rawPublicKey(key));
}
