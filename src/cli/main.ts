// The `orbit` command line: builds the program from its command groups, runs it, and turns every
// failure into one line on stderr and an exit code (2: wrong usage, 1: the command failed).
import { Command, CommanderError, type ErrorOptions, type HelpContext } from 'commander';
import { addJobCommands } from './job-commands.js';
import { addMaintenanceCommands } from './maintenance-commands.js';
import { addMountCommands } from './mount-commands.js';
import { addPeerCommands } from './peer-commands.js';
import { addPolicyCommands } from './policy-commands.js';
import { addRealCommands } from './real-commands.js';
import { addPoolCommands } from './pool-commands.js';
import { reportError } from './output.js';
import { addStoreCommands } from './store-commands.js';
import { addTierCommands } from './tier-commands.js';

const USAGE_EXIT = 2;

/** A command whose usage errors are one line, prefixed with the command's full name. */
class OrbitCommand extends Command {
  override createCommand(name?: string): OrbitCommand {
    return new OrbitCommand(name);
  }

  private fullName(): string {
    const names = [this.name()];
    for (let c = this.parent; c; c = c.parent) names.unshift(c.name());
    return names.join(' ');
  }

  override error(message: string, errorOptions?: ErrorOptions): never {
    // commander's messages start with "error: " and put suggestions on a line of their own.
    const line = message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    return super.error(`${this.fullName()}: ${line}`, { ...errorOptions, exitCode: USAGE_EXIT });
  }

  override help(context?: HelpContext): never;
  override help(cb: (str: string) => string): never;
  override help(context?: HelpContext | ((str: string) => string)): never {
    if (typeof context === 'function') return super.help(context);
    // commander answers a missing subcommand with the whole help on stderr; one line says enough.
    if (!context?.error) return super.help(context);
    const names = this.commands.map((c) => c.name()).join(', ');
    return this.error(`expects a command (${names}); see '${this.fullName()} --help'`, { code: 'orbit.missingCommand' });
  }
}

function buildProgram(): Command {
  const program = new OrbitCommand('orbit')
    .description('Orbit: a deduplicating FUSE filesystem')
    // Set before the commands are added: they copy it from the program.
    .exitOverride();
  addStoreCommands(program);
  addMountCommands(program);
  addMaintenanceCommands(program);
  addPoolCommands(program);
  addPolicyCommands(program);
  addJobCommands(program);
  addTierCommands(program);
  addPeerCommands(program);
  addRealCommands(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  // commander has printed its own errors already, and exits 0 after --help.
  if (err instanceof CommanderError) process.exitCode = err.exitCode === 0 ? 0 : USAGE_EXIT;
  else {
    reportError(err);
    process.exitCode = 1;
  }
}
