// The --home option of every command that works on a store, and the store it names opened for
// the length of one command.
import { Option } from 'commander';
import { defaultHome, Store } from '../store/store.js';

export interface HomeOptions {
  home: string;
}

export function homeOption(): Option {
  return new Option('--home <dir>', 'the store directory').default(defaultHome(), '$ORBIT_HOME, else ~/.local/share/orbit');
}

/** Runs `use` on the store at `home`, closing the store however `use` ends. */
export async function withStore<T>(home: string, use: (store: Store) => Promise<T>): Promise<T> {
  const store = await Store.open(home);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}
