/*
 * Who holds the worker's native memory, sampled from inside the process: an LD_PRELOAD probe, not product
 * code. It records every anonymous mmap by the library that asked for it (V8 in the node binary, DuckDB's
 * jemalloc in libduckdb, chDB's in libchdb), and every MSTAT_MS ms (default 100) writes one line to
 * $MSTAT_OUT.<pid>: VmRSS, the smaps total (to check the parts sum to it), whether a lake seal runs (a
 * `.partial` file open), the resident MiB of glibc's main arena (`[heap]`), mapped files, stacks and other
 * anonymous memory, each owner's resident MiB (from /proc/self/pagemap, so mappings the kernel merged are
 * still told apart) and glibc's mallinfo2 (arena, in use, free, mmapped chunks: what glibc itself maps,
 * e.g. ArrayBuffers over its mmap threshold, is the anonymous memory no owner claims). Only a process
 * whose command line holds $MSTAT_MATCH (default `child.js`, the bench's parts) is probed.
 *
 *   gcc -O2 -shared -fPIC -o /tmp/mem-owners.so bench/mem-owners.c -ldl -lpthread
 *   MSTAT_OUT=/tmp/owners MSTAT_MS=200 LD_PRELOAD=/tmp/mem-owners.so \
 *     node --expose-gc dist/bench/run.js --only pipeline --meters 20000
 *
 * A sample reads every tracked page's entry and /proc/self/smaps: 50-250 ms of its own thread at 1.5 GB.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAXR 200000
enum { O_NODE, O_DUCK, O_CHDB, O_OTHER, NOWN };
static const char *onames[NOWN] = {"v8", "duck", "chdb", "other"};
typedef struct { uintptr_t a, b; int o; } reg_t;
static reg_t *regs; static int nregs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static int active;
static __thread int inside;

static int owner_of(void *ret) {
  Dl_info info;
  if (!dladdr(ret, &info) || !info.dli_fname) return O_OTHER;
  if (strstr(info.dli_fname, "duckdb")) return O_DUCK;
  if (strstr(info.dli_fname, "chdb")) return O_CHDB;
  if (strstr(info.dli_fname, "node") && !strstr(info.dli_fname, ".so")) return O_NODE;
  if (strstr(info.dli_fname, "/usr/bin/node")) return O_NODE;
  return O_OTHER;
}

static void remove_range(uintptr_t a, uintptr_t b) {
  for (int i = 0; i < nregs; i++) {
    reg_t *r = &regs[i];
    if (r->b <= a || r->a >= b) continue;
    if (r->a >= a && r->b <= b) { regs[i] = regs[--nregs]; i--; continue; }
    if (r->a < a && r->b > b) { if (nregs < MAXR) regs[nregs++] = (reg_t){b, r->b, r->o}; r->b = a; continue; }
    if (r->a < a) r->b = a; else r->a = b;
  }
}
static void add_range(uintptr_t a, uintptr_t b, int o) {
  remove_range(a, b);
  if (nregs < MAXR) regs[nregs++] = (reg_t){a, b, o};
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (!real_mmap) real_mmap = dlsym(RTLD_NEXT, "mmap");
  void *p = real_mmap(addr, len, prot, flags, fd, off);
  if (active && p != MAP_FAILED && (flags & MAP_ANONYMOUS) && !inside) {
    inside = 1;
    int o = owner_of(__builtin_return_address(0));
    pthread_mutex_lock(&mu); add_range((uintptr_t)p, (uintptr_t)p + len, o); pthread_mutex_unlock(&mu);
    inside = 0;
  }
  return p;
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));
int munmap(void *addr, size_t len) {
  if (!real_munmap) real_munmap = dlsym(RTLD_NEXT, "munmap");
  int r = real_munmap(addr, len);
  if (active && r == 0) { pthread_mutex_lock(&mu); remove_range((uintptr_t)addr, (uintptr_t)addr + len); pthread_mutex_unlock(&mu); }
  return r;
}
void *mremap(void *old, size_t olen, size_t nlen, int flags, ...) {
  if (!real_mremap) real_mremap = dlsym(RTLD_NEXT, "mremap");
  void *newaddr = NULL;
  if (flags & MREMAP_FIXED) { va_list ap; va_start(ap, flags); newaddr = va_arg(ap, void *); va_end(ap); }
  void *p = real_mremap(old, olen, nlen, flags, newaddr);
  if (active && p != MAP_FAILED) {
    pthread_mutex_lock(&mu);
    int o = -1;
    for (int i = 0; i < nregs; i++) if (regs[i].a <= (uintptr_t)old && regs[i].b > (uintptr_t)old) { o = regs[i].o; break; }
    remove_range((uintptr_t)old, (uintptr_t)old + olen);
    if (o >= 0) add_range((uintptr_t)p, (uintptr_t)p + nlen, o);
    pthread_mutex_unlock(&mu);
  }
  return p;
}

static long now_ms(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec * 1000L + t.tv_nsec / 1000000; }

static void *loop(void *arg) {
  (void)arg;
  char path[512];
  snprintf(path, sizeof path, "%s.%d", getenv("MSTAT_OUT"), getpid());
  FILE *out = fopen(path, "w");
  if (!out) return NULL;
  int period = getenv("MSTAT_MS") ? atoi(getenv("MSTAT_MS")) : 100;
  int pm = open("/proc/self/pagemap", O_RDONLY);
  char line[1024];
  static uint64_t buf[65536];
  reg_t *copy = malloc(sizeof(reg_t) * MAXR);
  for (;;) {
    long t = now_ms();
    int partial = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) { struct dirent *e; char lp[600], target[600];
      while ((e = readdir(d))) { snprintf(lp, sizeof lp, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(lp, target, sizeof target - 1); if (n <= 0) continue; target[n] = 0;
        if (strstr(target, ".partial")) partial++; }
      closedir(d); }
    long vmrss = 0;
    FILE *s = fopen("/proc/self/status", "r");
    if (s) { while (fgets(line, sizeof line, s)) sscanf(line, "VmRSS: %ld", &vmrss); fclose(s); }
    struct mallinfo2 mi = mallinfo2();
    // owners' resident pages
    pthread_mutex_lock(&mu); int n = nregs; memcpy(copy, regs, sizeof(reg_t) * n); pthread_mutex_unlock(&mu);
    long res[NOWN] = {0}, mapped[NOWN] = {0};
    for (int i = 0; i < n; i++) {
      uintptr_t a = copy[i].a & ~4095UL, b = (copy[i].b + 4095) & ~4095UL;
      mapped[copy[i].o] += (b - a) >> 10;
      for (uintptr_t p = a; p < b;) {
        size_t pages = (b - p) >> 12; if (pages > 65536) pages = 65536;
        ssize_t got = pread(pm, buf, pages * 8, (p >> 12) * 8);
        if (got <= 0) break;
        for (ssize_t k = 0; k < got / 8; k++) if (buf[k] >> 63) res[copy[i].o] += 4;
        p += (size_t)(got / 8) << 12;
      }
    }
    // smaps totals
    long heap = 0, file = 0, anon = 0, stack = 0, total = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    int kind = 0;
    if (f) {
      while (fgets(line, sizeof line, f)) {
        long kb;
        if (strncmp(line, "Rss:", 4) == 0) { sscanf(line, "Rss: %ld", &kb); total += kb;
          if (kind == 1) heap += kb; else if (kind == 2) file += kb; else if (kind == 3) stack += kb; else anon += kb; }
        else if (((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) && strchr(line, '-') && strchr(line, '-') < strchr(line, ' ')) {
          char *nl = strchr(line, '\n'); if (nl) *nl = 0;
          // path is after 5 fields
          char *p = line; int fld = 0; while (*p && fld < 5) { while (*p && *p != ' ') p++; while (*p == ' ') p++; fld++; }
          if (strcmp(p, "[heap]") == 0) kind = 1; else if (*p == '/') kind = 2; else if (strncmp(p, "[stack", 6) == 0) kind = 3; else kind = 0;
        }
      }
      fclose(f);
    }
    fprintf(out, "%ld rss %ld total %ld partial %d heap %ld file %ld stack %ld anon %ld", t, vmrss >> 10, total >> 10, partial, heap >> 10, file >> 10, stack >> 10, anon >> 10);
    for (int o = 0; o < NOWN; o++) fprintf(out, " %s %ld %s_map %ld", onames[o], res[o] >> 10, onames[o], mapped[o] >> 10);
    fprintf(out, " mi_arena %zu mi_hblkhd %zu mi_uord %zu mi_ford %zu nregs %d took %ld\n", mi.arena >> 20, mi.hblkhd >> 20, mi.uordblks >> 20, mi.fordblks >> 20, n, now_ms() - t);
    fflush(out);
    usleep(period * 1000);
  }
  return NULL;
}

__attribute__((constructor)) static void start(void) {
  if (!getenv("MSTAT_OUT")) return;
  char exe[512]; ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1); if (n <= 0) return; exe[n] = 0;
  if (!strstr(exe, "node")) return;
  FILE *c = fopen("/proc/self/cmdline", "r"); char cmd[2048] = {0}; size_t m = c ? fread(cmd, 1, sizeof cmd - 1, c) : 0; if (c) fclose(c);
  for (size_t i = 0; i < m; i++) if (!cmd[i]) cmd[i] = ' ';
  if (!strstr(cmd, getenv("MSTAT_MATCH") ? getenv("MSTAT_MATCH") : "child.js")) return;
  regs = malloc(sizeof(reg_t) * MAXR);
  active = 1;
  pthread_t th; pthread_attr_t at; pthread_attr_init(&at); pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_create(&th, &at, loop, NULL);
}
