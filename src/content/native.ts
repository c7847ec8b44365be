// The content layer's native addon (src/content/native/, built by node-gyp at `npm ci`):
// content-defined cut points, and copies into and out of shared memory, in C. Optional: without
// it, chunker.ts cuts in TypeScript, to the same points, and copies use TypedArray.set: the same
// results, only slower.
import { createRequire } from 'node:module';

export interface NativeContent {
  cuts(bytes: Uint8Array, gear: Int32Array, minSize: number, avgSize: number, maxSize: number, hardMask: number, easyMask: number): number[];
  copy(target: Uint8Array, at: number, source: Uint8Array): void;
}

let loaded: NativeContent | null | undefined;

/** The addon, or undefined when it was not built. Loaded once. */
export function nativeContent(): NativeContent | undefined {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('../../build/Release/orbit_content.node') as NativeContent;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}

/** Copies `source` into `target` at `at`, as target.set(source, at) does. For memory shared with
 * the codec workers: V8 moves bytes into or out of a SharedArrayBuffer with relaxed atomic stores
 * at about 2 GB/s here, the addon with memmove at 5 (see native/shared_copy.c). */
export function copyBytes(target: Uint8Array, at: number, source: Uint8Array): void {
  const native = nativeContent();
  if (native) native.copy(target, at, source);
  else target.set(source, at);
}
