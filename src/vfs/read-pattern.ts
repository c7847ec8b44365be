// What a reader of one open file will probably read next, from what it read so far: the ranges
// worth fetching ahead of it. The kernel splits a large read into requests at increasing offsets,
// so a "run" is a stretch of requests that each start where the last ended.
//
// - Sequential: once a run is long (SEQUENTIAL_AFTER), the bytes after it, as far ahead as the run
//   is long (up to MAX_AHEAD): a reader that has read 8 MiB in a row will likely read 8 more, one
//   that read 1 MiB maybe not. A random reader's runs stay short, so it moves no bytes it did not
//   ask for (what matters when every chunk comes over the network).
// - Strided: when runs start at a steady stride (two strides alike), the next runs, as long as
//   the last one, STRIDES_AHEAD of them.
export const SEQUENTIAL_AFTER = 4 * 1024 * 1024;
export const MAX_AHEAD = 16 * 1024 * 1024;
export const STRIDES_AHEAD = 2;

export type ByteRange = readonly [start: number, end: number];

export class ReadPattern {
  private runStart = -1;
  private runEnd = -1;
  private lastRunLength = 0;
  private stride = 0;
  /** How many runs in a row began one stride after the one before. */
  private strides = 0;
  /** The end of what was already suggested ahead of the current run (nothing twice). */
  private aheadTo = -1;

  /** Records a read of [offset, end); returns the ranges to fetch ahead (possibly none). */
  read(offset: number, end: number): ByteRange[] {
    if (offset === this.runEnd) {
      this.runEnd = end;
    } else {
      const stride = offset - this.runStart;
      if (this.runStart >= 0 && stride > 0 && stride === this.stride) this.strides++;
      else {
        this.stride = stride;
        this.strides = 0;
      }
      this.lastRunLength = this.runEnd - this.runStart;
      this.runStart = offset;
      this.runEnd = end;
      this.aheadTo = -1;
    }
    const ahead: ByteRange[] = [];
    const run = this.runEnd - this.runStart;
    if (run >= SEQUENTIAL_AFTER) {
      const to = end + Math.min(run, MAX_AHEAD);
      const from = Math.max(end, this.aheadTo);
      if (to > from) ahead.push([from, to]);
      this.aheadTo = Math.max(this.aheadTo, to);
    } else if (this.strides >= 1 && offset === this.runStart) {
      const length = Math.max(this.lastRunLength, end - offset);
      for (let k = 1; k <= STRIDES_AHEAD; k++) ahead.push([offset + k * this.stride, offset + k * this.stride + length]);
    }
    return ahead;
  }
}
