#!/usr/bin/env node
// Runs Orbit's command line from a clone: the TypeScript sources through tsx, with no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
