// Every kind of job a runner can run.
import type { JobHandler } from './contract.js';
import { drainHandler, rebuildHandler, scrubHandler } from './pool-walks.js';
import { reencodeHandler } from './reencode.js';
import { tierHandler } from './tier-walk.js';

export const JOB_HANDLERS: readonly JobHandler[] = [reencodeHandler, scrubHandler, rebuildHandler, drainHandler, tierHandler];
