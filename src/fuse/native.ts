// Loads the libfuse3 binding (built by node-gyp at `npm ci`) and shares the scratch area with it.
import { createRequire } from 'node:module';
import { MountError } from './errors.js';
import { SCRATCH_DOUBLES } from './ops.js';

type Id = number;

export interface NativeBinding {
  setScratch(buffer: ArrayBuffer): void;
  createSession(dispatch: (s1?: string, s2?: string, data?: Buffer) => void, options: number[], computedXattrs?: string, xattrNamespaces?: readonly string[]): NativeSession;
  mount(session: NativeSession, mountpoint: string, options: string): Promise<void>;
  unmount(mountpoint: string, lazy: boolean): Promise<void>;
  unmountSync(mountpoint: string): number;
  notify(session: NativeSession, kind: number, ino: number, a: number, b: number | string): Promise<number>;
  libfuseVersion(): number;
  markNoXattrs(session: NativeSession, inos: Float64Array): void;
  unmarkNoXattrs(session: NativeSession, ino: number): void;
  replyErr(id: Id, errno: number): boolean;
  replyEntry(id: Id): boolean;
  replyCreate(id: Id, fh: number, openBits: number): boolean;
  replyAttr(id: Id): boolean;
  replyOpen(id: Id, fh: number, openBits: number): boolean;
  replyWrite(id: Id, count: number): boolean;
  replyXattr(id: Id, size: number): boolean;
  replyLseek(id: Id, offset: number): boolean;
  replyStatfs(id: Id): boolean;
  replyBuf(id: Id, bytes: Uint8Array, length?: number): boolean;
  replyIov(id: Id, parts: readonly Uint8Array[]): boolean;
  replyReadlink(id: Id, target: string, utf8: boolean): boolean;
  releasePayload(data: Buffer): void;
}

/** Opaque handle of a native session. */
export type NativeSession = { readonly __brand: 'NativeSession' };

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  try {
    return require('../../build/Release/orbit_fuse.node') as NativeBinding;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (message.includes('libfuse3')) {
      throw new MountError('libfuse3 is not installed (on Debian/Ubuntu: apt-get install fuse3)');
    }
    if ((err as { code?: string }).code === 'MODULE_NOT_FOUND') {
      throw new MountError('the FUSE binding is not built: run npm ci (it needs libfuse3-dev and pkg-config)');
    }
    throw err;
  }
}

export interface LoadedBinding {
  native: NativeBinding;
  /** One exchange area for all sessions: requests are written to its first half just before the
   * dispatcher runs, replies to its second half just before a reply call. Both are synchronous on
   * the JS thread, so they never overlap. */
  scratch: Float64Array;
}

let loaded: LoadedBinding | undefined;

/** The binding, loaded on first use so that a missing libfuse3 is a MountError the caller can
 * report in one line, not a failure at import time. */
export function loadBinding(): LoadedBinding {
  if (!loaded) {
    const native = load();
    const buffer = new ArrayBuffer(SCRATCH_DOUBLES * 8);
    native.setScratch(buffer);
    loaded = { native, scratch: new Float64Array(buffer) };
  }
  return loaded;
}
