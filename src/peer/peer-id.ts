// The peer ID: what people and peers know a store by, made from its Ed25519 public key. It is
// Syncthing's device ID, taken over the raw 32-byte public key rather than the whole
// certificate: SHA-256 of the key, in RFC 4648 base32 (52 characters, A-Z and 2-7), cut
// into 4 groups of 13, each followed by a Luhn mod 32 check character (Syncthing's variant),
// and shown as 8 groups of 7 joined by '-'. Hashing the key, not the certificate, lets the
// certificate be made again (lost, or with other fields) without changing who the store is.
// People copy IDs by hand and read them over the phone, hence the check characters (they catch
// every single mistyped character) and the tolerance: any case, dashes and spaces anywhere, and
// 0, 1, 8 read as O, I, B (which base32 does not use).
import { createHash, KeyObject } from 'node:crypto';

/** The canonical text of a peer ID: 8 groups of 7 characters (A-Z, 2-7) joined by '-'. */
export type PeerId = string;

/** RFC 4648 base32, which is also the alphabet of the check characters. */
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** Base32 characters of the SHA-256 digest (256 bits / 5, rounded up). */
const DIGEST_CHARS = 52;
/** The digest is checked in 4 groups of 13 characters, each followed by its check character. */
const CHECKED_GROUP = 13;
const CHECKED_GROUPS = 4;
const ID_CHARS = DIGEST_CHARS + CHECKED_GROUPS;
/** Shown in groups of 7: every second group ends with a check character. */
const SHOWN_GROUP = 7;

/** A text that is not a peer ID; the message says what is wrong with it, for the user. */
export class PeerIdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeerIdError';
  }
}

/**
 * The check character of `text` over `alphabet` (base N = its length), as Syncthing computes it:
 * left to right, factors 1, 2, 1, 2..., each product's base-N digits summed. For an even length
 * this is the true Luhn mod N; for an odd one (13 here) the factors are the other way round,
 * which catches single substitutions just as well.
 */
export function luhnCheckCharacter(text: string, alphabet = BASE32): string {
  const n = alphabet.length;
  let factor = 1;
  let sum = 0;
  for (const char of text) {
    const codepoint = alphabet.indexOf(char);
    if (codepoint < 0) throw new PeerIdError(`${JSON.stringify(char)} is not in the alphabet ${alphabet}`);
    const addend = factor * codepoint;
    factor = factor === 2 ? 1 : 2;
    sum += Math.floor(addend / n) + (addend % n);
  }
  return alphabet[(n - (sum % n)) % n]!;
}

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The peer ID whose digest is `digest` (32 bytes). peerIdOf() is what callers want; this is
 * Syncthing's formatting alone, which its device IDs (digests of certificates) share. */
export function peerIdFromDigest(digest: Uint8Array): PeerId {
  if (digest.length !== 32) throw new PeerIdError(`a peer ID is made of a 32-byte digest, not ${digest.length} bytes`);
  const text = base32(digest);
  let checked = '';
  for (let g = 0; g < CHECKED_GROUPS; g++) {
    const group = text.slice(g * CHECKED_GROUP, (g + 1) * CHECKED_GROUP);
    checked += group + luhnCheckCharacter(group);
  }
  return showGroups(checked);
}

const showGroups = (chars: string): PeerId => chars.match(new RegExp(`.{${SHOWN_GROUP}}`, 'g'))!.join('-');

/** The peer ID of an Ed25519 public key: a KeyObject, or its 32 raw bytes. */
export function peerIdOf(publicKey: KeyObject | Uint8Array): PeerId {
  let raw: Uint8Array;
  if (publicKey instanceof KeyObject) {
    if (publicKey.type !== 'public' || publicKey.asymmetricKeyType !== 'ed25519') {
      const kind = publicKey.type === 'secret' ? 'secret' : `${publicKey.asymmetricKeyType} ${publicKey.type}`;
      throw new PeerIdError(`a peer ID is made from an Ed25519 public key, not from a ${kind} key`);
    }
    raw = rawPublicKey(publicKey);
  } else {
    raw = publicKey;
  }
  if (raw.length !== 32) throw new PeerIdError(`an Ed25519 public key is 32 bytes, not ${raw.length}`);
  return peerIdFromDigest(createHash('sha256').update(raw).digest());
}

/** The 32 bytes of an Ed25519 public key (RFC 8032), as JWK carries them. */
export function rawPublicKey(publicKey: KeyObject): Buffer {
  const { x } = publicKey.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new PeerIdError(`not an Ed25519 public key (${publicKey.asymmetricKeyType ?? publicKey.type})`);
  return Buffer.from(x, 'base64url');
}

/**
 * The canonical form of a peer ID typed or pasted by someone: any case, any dashes and spaces,
 * 0/1/8 for O/I/B. Throws PeerIdError saying what is wrong: the length, a character that is not
 * in an ID, or which check character does not match (a character near it was mistyped).
 */
export function parsePeerId(text: string): PeerId {
  const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text);
  const chars = text.toUpperCase().replace(/[-\s]/g, '').replace(/0/g, 'O').replace(/1/g, 'I').replace(/8/g, 'B');
  if (chars.length !== ID_CHARS) {
    throw new PeerIdError(`peer ID ${shown} has ${chars.length} letters and digits; a peer ID has ${ID_CHARS} (8 groups of 7): part of it is missing or extra`);
  }
  for (let i = 0; i < chars.length; i++) {
    if (!BASE32.includes(chars[i]!)) {
      throw new PeerIdError(`peer ID ${shown} has ${JSON.stringify(chars[i])} in group ${Math.floor(i / SHOWN_GROUP) + 1}, which no peer ID has (only letters A-Z and digits 2-7)`);
    }
  }
  for (let g = 0; g < CHECKED_GROUPS; g++) {
    const start = g * (CHECKED_GROUP + 1);
    const group = chars.slice(start, start + CHECKED_GROUP);
    if (luhnCheckCharacter(group) !== chars[start + CHECKED_GROUP]) {
      throw new PeerIdError(`peer ID ${shown} has a wrong check character in group ${2 * g + 2}: a character in groups ${2 * g + 1}-${2 * g + 2} was mistyped`);
    }
  }
  return showGroups(chars);
}

export function isPeerId(text: string): boolean {
  try {
    parsePeerId(text);
    return true;
  } catch {
    return false;
  }
}

/** The first group of a peer ID: enough to tell a household's peers apart in logs and tables. */
export const shortPeerId = (id: PeerId): string => id.slice(0, SHOWN_GROUP);
