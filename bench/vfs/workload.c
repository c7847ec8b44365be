/*
 * The filesystem benchmark's workload (bench/vfs/filesystem.ts): each phase is one run of this
 * program against a directory, timed around the system calls themselves, so that every side pays
 * the same small cost per operation. Node's fs would add a thread-pool hop and a promise to each
 * call, which is as large as a FUSE round trip and would hide the metadata figures.
 * File contents come from a file of random bytes mapped in memory (on tmpfs): Orbit deduplicates
 * and compresses, so zeros or repeated blocks would flatter it.
 *
 *   workload fill FILE MIB                     random bytes; no two MiB alike (the bench's source)
 *   workload seqwrite SRC DST MIB              DST from SRC with 1 MiB writes; close; reopen, fsync
 *   workload seqread FILE                      1 MiB reads to the end
 *   workload firstbyte FILE                    open, then one 4 KiB read: the time to the first byte
 *   workload randread FILE COUNT               COUNT 4 KiB preads at random aligned offsets
 *   workload create|stat|unlink DIR COUNT      on DIR/f00000 ... : open(O_CREAT|O_WRONLY)+close,
 *                                              stat(2), unlink(2)
 *   workload smallwrite SRC OFFSET DIR COUNT SIZE   COUNT files of SIZE bytes, SRC from OFFSET on
 *   workload smallread DIR COUNT SIZE               read them back
 *
 * Each prints one JSON line: seconds taken (and, for seqwrite, seconds until close and until the
 * fsync after it). A failing call ends the program with a line naming it and exit code 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)
#define PAGE 4096u

static void die(const char *what, const char *path) {
  fprintf(stderr, "workload: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64: fast, and every output differs, so no two blocks of the source repeat. */
static uint64_t rng_state;
static uint64_t next_random(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static long count_arg(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end != '\0' || v < 0) {
    fprintf(stderr, "workload: not a count: %s\n", s);
    exit(2);
  }
  return v;
}

/* The whole file, mapped and faulted in before any timing starts. */
static const char *map_source(const char *path, size_t *size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open", path);
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat", path);
  *size = (size_t)st.st_size;
  void *p = mmap(NULL, *size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) die("mmap", path);
  close(fd);
  return p;
}

static void write_all(int fd, const char *buf, size_t n, const char *path) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0) die("write", path);
    buf += w;
    n -= (size_t)w;
  }
}

static int fill(const char *path, long mib) {
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) die("open", path);
  uint64_t *buf = malloc(MIB);
  rng_state = 0x0b17b17b17ull;
  for (long i = 0; i < mib; i++) {
    for (size_t j = 0; j < MIB / 8; j++) buf[j] = next_random();
    write_all(fd, (const char *)buf, MIB, path);
  }
  if (close(fd) < 0) die("close", path);
  free(buf);
  printf("{\"bytes\":%ld}\n", mib * (long)MIB);
  return 0;
}

static int seqwrite(const char *src, const char *dst, long mib) {
  size_t size;
  const char *data = map_source(src, &size);
  if ((size_t)mib * MIB > size) {
    fprintf(stderr, "workload: %s holds less than %ld MiB\n", src, mib);
    return 1;
  }
  double t0 = now();
  int fd = open(dst, O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0) die("open", dst);
  for (long i = 0; i < mib; i++) write_all(fd, data + (size_t)i * MIB, MIB, dst);
  if (close(fd) < 0) die("close", dst); /* Orbit commits on close: it belongs to the write */
  double closed = now();
  fd = open(dst, O_WRONLY);
  if (fd < 0) die("open", dst);
  if (fsync(fd) < 0) die("fsync", dst);
  if (close(fd) < 0) die("close", dst);
  double synced = now();
  printf("{\"bytes\":%ld,\"closed\":%.6f,\"synced\":%.6f}\n", mib * (long)MIB, closed - t0, synced - t0);
  return 0;
}

static int seqread(const char *path) {
  char *buf = malloc(MIB);
  double t0 = now();
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open", path);
  long total = 0;
  for (;;) {
    ssize_t r = read(fd, buf, MIB);
    if (r < 0) die("read", path);
    if (r == 0) break;
    total += r;
  }
  close(fd);
  printf("{\"bytes\":%ld,\"seconds\":%.6f}\n", total, now() - t0);
  free(buf);
  return 0;
}

static int firstbyte(const char *path) {
  char *buf = malloc(PAGE);
  double t0 = now();
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open", path);
  ssize_t r = read(fd, buf, PAGE);
  if (r < 0) die("read", path);
  double t = now() - t0;
  close(fd);
  printf("{\"bytes\":%zd,\"seconds\":%.6f}\n", r, t);
  free(buf);
  return 0;
}

static int randread(const char *path, long count) {
  char *buf = malloc(PAGE);
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("open", path);
  struct stat st;
  if (fstat(fd, &st) < 0) die("fstat", path);
  uint64_t pages = (uint64_t)st.st_size / PAGE;
  if (pages == 0) {
    fprintf(stderr, "workload: %s is smaller than a page\n", path);
    return 1;
  }
  rng_state = 42; /* the same offsets on every side */
  double t0 = now();
  for (long i = 0; i < count; i++) {
    off_t off = (off_t)(next_random() % pages) * PAGE;
    if (pread(fd, buf, PAGE, off) != (ssize_t)PAGE) die("pread", path);
  }
  double t = now() - t0;
  close(fd);
  printf("{\"ops\":%ld,\"seconds\":%.6f}\n", count, t);
  free(buf);
  return 0;
}

static int metadata(const char *op, const char *dir, long count) {
  char path[4096];
  struct stat st;
  double t0 = now();
  for (long i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/f%05ld", dir, i);
    if (strcmp(op, "create") == 0) {
      int fd = open(path, O_CREAT | O_WRONLY, 0644);
      if (fd < 0) die("open", path);
      if (close(fd) < 0) die("close", path);
    } else if (strcmp(op, "stat") == 0) {
      if (stat(path, &st) < 0) die("stat", path);
    } else if (unlink(path) < 0) {
      die("unlink", path);
    }
  }
  printf("{\"ops\":%ld,\"seconds\":%.6f}\n", count, now() - t0);
  return 0;
}

static int smallwrite(const char *src, long offset, const char *dir, long count, long fileSize) {
  size_t size;
  const char *data = map_source(src, &size);
  if ((size_t)offset + (size_t)count * (size_t)fileSize > size) {
    fprintf(stderr, "workload: %s is too small for %ld files of %ld bytes from %ld\n", src, count, fileSize, offset);
    return 1;
  }
  char path[4096];
  double t0 = now();
  for (long i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/s%05ld", dir, i);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) die("open", path);
    write_all(fd, data + offset + (size_t)i * (size_t)fileSize, (size_t)fileSize, path);
    if (close(fd) < 0) die("close", path);
  }
  printf("{\"ops\":%ld,\"seconds\":%.6f}\n", count, now() - t0);
  return 0;
}

static int smallread(const char *dir, long count, long fileSize) {
  char path[4096];
  char *buf = malloc((size_t)fileSize + 1);
  double t0 = now();
  for (long i = 0; i < count; i++) {
    snprintf(path, sizeof path, "%s/s%05ld", dir, i);
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("open", path);
    long got = 0;
    for (;;) {
      ssize_t r = read(fd, buf, (size_t)fileSize + 1); /* only counted: one more than expected shows a longer file */
      if (r < 0) die("read", path);
      if (r == 0) break;
      got += r;
    }
    close(fd);
    if (got != fileSize) {
      fprintf(stderr, "workload: %s holds %ld bytes, not %ld\n", path, got, fileSize);
      return 1;
    }
  }
  printf("{\"ops\":%ld,\"seconds\":%.6f}\n", count, now() - t0);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "";
  if (strcmp(cmd, "fill") == 0 && argc == 4) return fill(argv[2], count_arg(argv[3]));
  if (strcmp(cmd, "seqwrite") == 0 && argc == 5) return seqwrite(argv[2], argv[3], count_arg(argv[4]));
  if (strcmp(cmd, "seqread") == 0 && argc == 3) return seqread(argv[2]);
  if (strcmp(cmd, "firstbyte") == 0 && argc == 3) return firstbyte(argv[2]);
  if (strcmp(cmd, "randread") == 0 && argc == 4) return randread(argv[2], count_arg(argv[3]));
  if ((strcmp(cmd, "create") == 0 || strcmp(cmd, "stat") == 0 || strcmp(cmd, "unlink") == 0) && argc == 4)
    return metadata(cmd, argv[2], count_arg(argv[3]));
  if (strcmp(cmd, "smallwrite") == 0 && argc == 7)
    return smallwrite(argv[2], count_arg(argv[3]), argv[4], count_arg(argv[5]), count_arg(argv[6]));
  if (strcmp(cmd, "smallread") == 0 && argc == 5) return smallread(argv[2], count_arg(argv[3]), count_arg(argv[4]));
  fprintf(stderr, "usage: see the comment at the top of bench/vfs/workload.c\n");
  return 2;
}
