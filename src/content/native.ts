// The content layer's native addon (src/content/native/gear_cdc.c, built by node-gyp at `npm ci`):
// content-defined cut points in C. Optional: without it, chunker.ts cuts in TypeScript, to the
// same points, only slower.
import { createRequire } from 'node:module';

export interface NativeContent {
  cuts(bytes: Uint8Array, gear: Int32Array, minSize: number, avgSize: number, maxSize: number, hardMask: number, easyMask: number): number[];
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
