// Facts about other processes, for the files that record which process holds what.
import { readFileSync } from 'node:fs';

/** Whether process `pid` exists and has not died (EPERM: it exists, owned by someone else). A
 * zombie counts as dead: a holder killed while its parent (or an init that reaps nothing, as in
 * some containers) has not collected it still answers signal 0, and its locks must be taken over. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // procfs, not a disk: this read costs what a system call does. "pid (comm) S ...": the state
    // follows the last ')' (comm may hold anything).
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no procfs: signal 0 is all there is
  }
}
