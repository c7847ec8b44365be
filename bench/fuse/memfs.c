/*
 * The benchmark's reference: a minimal in-memory filesystem written directly against libfuse3's
 * low-level API, with the same init choices as Orbit's binding (1 MiB max_write and readahead,
 * multi-threaded loop, no splice). It holds a flat directory of regular files whose bytes live in
 * 1 MiB blocks. It exists to measure what the kernel and libfuse allow on this machine, so that
 * the TypeScript binding can be judged against it in the same run.
 *
 *   memfs-c MOUNTPOINT [--keep-cache]
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1u << 20)
#define MAX_FILES 4096
#define ROOT 1

typedef struct {
  char name[256];
  int used;
  off_t size;
  size_t nblocks;
  char **blocks;
  struct timespec mtime;
} file_t;

static file_t files[MAX_FILES + 2]; /* inode = index; 1 is the root */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int keep_cache;

static void fill_attr(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  if (ino == ROOT) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return;
  }
  file_t *f = &files[ino];
  st->st_mode = S_IFREG | 0644;
  st->st_nlink = 1;
  st->st_size = f->size;
  st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
  st->st_blksize = 4096;
  st->st_mtim = f->mtime;
  st->st_ctim = f->mtime;
  st->st_atim = f->mtime;
}

static int reply_entry(fuse_req_t req, fuse_ino_t ino) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = ino;
  e.attr_timeout = 1.0;
  e.entry_timeout = 1.0;
  fill_attr(ino, &e.attr);
  return fuse_reply_entry(req, &e);
}

static fuse_ino_t find(const char *name) {
  for (fuse_ino_t i = 2; i < MAX_FILES + 2; i++)
    if (files[i].used && strcmp(files[i].name, name) == 0) return i;
  return 0;
}

static void ensure_blocks(file_t *f, off_t end) {
  size_t need = (size_t)((end + BLOCK - 1) / BLOCK);
  if (need <= f->nblocks) return;
  f->blocks = realloc(f->blocks, need * sizeof(char *));
  for (size_t i = f->nblocks; i < need; i++) f->blocks[i] = NULL;
  f->nblocks = need;
}

static void truncate_to(file_t *f, off_t size) {
  size_t keep = (size_t)((size + BLOCK - 1) / BLOCK);
  for (size_t i = keep; i < f->nblocks; i++) {
    free(f->blocks[i]);
    f->blocks[i] = NULL;
  }
  if (keep < f->nblocks) f->nblocks = keep;
  if (keep > 0 && f->blocks[keep - 1] && size % BLOCK)
    memset(f->blocks[keep - 1] + size % BLOCK, 0, BLOCK - size % BLOCK);
  f->size = size;
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  conn->max_write = BLOCK;
  conn->max_readahead = BLOCK;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  pthread_mutex_lock(&lock);
  fuse_ino_t ino = parent == ROOT ? find(name) : 0;
  pthread_mutex_unlock(&lock);
  if (!ino) fuse_reply_err(req, ENOENT);
  else reply_entry(req, ino);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct stat st;
  pthread_mutex_lock(&lock);
  fill_attr(ino, &st);
  pthread_mutex_unlock(&lock);
  fuse_reply_attr(req, &st, 1.0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  struct stat st;
  pthread_mutex_lock(&lock);
  if ((to_set & FUSE_SET_ATTR_SIZE) && ino != ROOT) truncate_to(&files[ino], attr->st_size);
  fill_attr(ino, &st);
  pthread_mutex_unlock(&lock);
  fuse_reply_attr(req, &st, 1.0);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  (void)mode;
  if (parent != ROOT || strlen(name) > 255) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  pthread_mutex_lock(&lock);
  fuse_ino_t ino = find(name);
  if (!ino) {
    for (fuse_ino_t i = 2; i < MAX_FILES + 2; i++) {
      if (!files[i].used) {
        ino = i;
        memset(&files[i], 0, sizeof files[i]);
        files[i].used = 1;
        strcpy(files[i].name, name);
        clock_gettime(CLOCK_REALTIME, &files[i].mtime);
        break;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  if (!ino) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = ino;
  e.attr_timeout = e.entry_timeout = 1.0;
  fill_attr(ino, &e.attr);
  fi->keep_cache = keep_cache;
  fuse_reply_create(req, &e, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  fi->keep_cache = keep_cache;
  fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  static const char zeros[BLOCK];
  struct iovec iov[8];
  int n = 0;
  pthread_mutex_lock(&lock);
  file_t *f = &files[ino];
  off_t end = off + (off_t)size < f->size ? off + (off_t)size : f->size;
  for (off_t pos = off; pos < end && n < 8;) {
    size_t index = (size_t)(pos / BLOCK), within = (size_t)(pos % BLOCK);
    size_t len = BLOCK - within < (size_t)(end - pos) ? BLOCK - within : (size_t)(end - pos);
    const char *src = index < f->nblocks && f->blocks[index] ? f->blocks[index] + within : zeros;
    iov[n].iov_base = (void *)src;
    iov[n].iov_len = len;
    n++;
    pos += (off_t)len;
  }
  /* Replying under the lock keeps the blocks alive while the kernel copies them. */
  fuse_reply_iov(req, iov, n);
  pthread_mutex_unlock(&lock);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  pthread_mutex_lock(&lock);
  file_t *f = &files[ino];
  ensure_blocks(f, off + (off_t)size);
  for (size_t done = 0; done < size;) {
    off_t pos = off + (off_t)done;
    size_t index = (size_t)(pos / BLOCK), within = (size_t)(pos % BLOCK);
    size_t len = BLOCK - within < size - done ? BLOCK - within : size - done;
    if (!f->blocks[index]) f->blocks[index] = calloc(1, BLOCK);
    memcpy(f->blocks[index] + within, buf + done, len);
    done += len;
  }
  if (off + (off_t)size > f->size) f->size = off + (off_t)size;
  clock_gettime(CLOCK_REALTIME, &f->mtime);
  pthread_mutex_unlock(&lock);
  fuse_reply_write(req, size);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  pthread_mutex_lock(&lock);
  fuse_ino_t ino = parent == ROOT ? find(name) : 0;
  if (ino) {
    truncate_to(&files[ino], 0);
    free(files[ino].blocks);
    memset(&files[ino], 0, sizeof files[ino]);
  }
  pthread_mutex_unlock(&lock);
  fuse_reply_err(req, ino ? 0 : ENOENT);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  if (ino != ROOT) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  char *buf = calloc(1, size);
  size_t used = 0;
  struct stat st;
  memset(&st, 0, sizeof st);
  pthread_mutex_lock(&lock);
  for (off_t i = off; i < MAX_FILES + 2; i++) {
    const char *name = i == 0 ? "." : i == 1 ? ".." : files[i].used ? files[i].name : NULL;
    if (!name) continue;
    st.st_ino = i < 2 ? ROOT : (ino_t)i;
    st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
    size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  pthread_mutex_unlock(&lock);
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = st.f_frsize = 4096;
  st.f_blocks = st.f_bfree = st.f_bavail = 16u << 20;
  st.f_files = st.f_ffree = MAX_FILES;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

static const struct fuse_lowlevel_ops ops = {
  .init = op_init,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .create = op_create,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .unlink = op_unlink,
  .readdir = op_readdir,
  .statfs = op_statfs,
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MOUNTPOINT [--keep-cache]\n", argv[0]);
    return 2;
  }
  keep_cache = argc > 2 && strcmp(argv[2], "--keep-cache") == 0;
  char *fargv[] = {argv[0], "-o", "fsname=memfs-c,subtype=memfs-c", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 4);
  fuse_loop_cfg_set_idle_threads(cfg, 4);
  int ret = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  return ret ? 1 : 0;
}
