// Builds the libfuse3 binding at `npm ci`. Checks for the system library first so that a machine
// without it gets one clear line naming the packages, not a page of compiler errors.
import { spawnSync } from 'node:child_process';

const pkg = spawnSync('pkg-config', ['--exists', 'fuse3']);
if (pkg.error || pkg.status !== 0) {
  console.error(
    'orbit: libfuse3 development files not found (pkg-config fuse3). ' +
      'On Debian/Ubuntu: sudo apt-get install -y fuse3 libfuse3-dev pkg-config',
  );
  process.exit(1);
}

// npm hands install scripts the path of its bundled node-gyp.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const build = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
if (build.error) {
  console.error(`orbit: cannot run node-gyp: ${build.error.message}`);
  process.exit(1);
}
process.exit(build.status ?? 1);
