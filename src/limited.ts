// Many small I/O operations at once, but not all at once: enough in flight to keep a disk busy,
// few enough that a long list does not queue ahead of everything else on libuv's thread pool.

/** Runs `fn` on every item with at most `limit` running at a time; after a failure no new item
 * starts, and the first error is thrown once the running ones end. */
export async function forEachLimited<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (let next = queue.next(); !next.done && failure === undefined; next = queue.next()) {
      try {
        await fn(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  if (failure !== undefined) throw failure.error;
}
