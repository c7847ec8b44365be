#!/usr/bin/env -S node --initial-old-space-size=64
// Runs Orbit's command line from a clone: the TypeScript sources through tsx, with no build step.
//
// The flag on the first line is for the processes that serve (a mount, the daemon). V8 sets the
// old generation's limit from the live heap, which for Orbit is small (about 10 MB), and counts
// the ArrayBuffers chunks live in against it: with the default, a daemon moving 100 MB/s of
// chunks started a full mark-compact every 50-70 ms, which took most of a core. A floor of 64 MB
// makes those rare (measured: a remote read's CPU down by a quarter on the attaching side, a
// local write's by a fifth). V8 reads it only at start: NODE_OPTIONS refuses it and
// v8.setFlagsFromString is too late, hence the shebang; tests and benches start this file with
// the same flags (test/helpers.ts reads them from here).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
