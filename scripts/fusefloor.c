/* fusefloor: the least a FUSE filesystem can cost for a `find` on this machine.
 *
 * A read-only tree in the shape of the bench's find project, answered from
 * arithmetic in C on libfuse3's low-level API: no Python, no paths, no locks,
 * no allocation beyond the reply buffer. What a `find` of it costs is the
 * kernel's round trips to a FUSE daemon and nothing else, so it is the floor
 * under every figure of the find group: redcapfs (Python, the high-level API)
 * can approach it, not pass it.
 *
 * It behaves as a correct filesystem does, as redcapfs does: listings hold "."
 * and ".." (tools such as KDE's KIO and xfstests expect them), OPENDIR and
 * RELEASEDIR are answered, entries and attributes are valid for 1 s, and it
 * runs libfuse's multi-threaded loop.
 *
 * Tree: /.repository/ (empty), /R/ for R in 1..RECORDS, /R/FIELD/ for each of
 * FIELDS field names, and /R/FIELD0/doc-R.txt (6 bytes) where (R - 1) % EVERY == 0:
 * the bench's find project (scripts/benchlib/find.py) with RECORDS=10000, ten
 * fields, EVERY=100.
 *
 * Build: gcc -O2 -o fusefloor fusefloor.c $(pkg-config --cflags --libs fuse3)
 * Run:   fusefloor RECORDS EVERY FIELD... -- MOUNTPOINT -f   (fusermount3 -u MOUNTPOINT ends it)
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FIELDS 64
static long records;
static long every;
static int nfields;
static const char *fields[MAX_FIELDS];

/* Inode numbers: 1 the root, 2 .repository, then records, then field folders, then files. */
enum kind { ROOT, REPO, RECORD, FIELD, FILE_, NONE };
static fuse_ino_t rec_ino(long r) { return 2 + r; }
static fuse_ino_t fld_ino(long r, int f) { return 3 + records + (r - 1) * nfields + f; }
static fuse_ino_t file_ino(long r) { return 3 + records + records * nfields + r; }
static int has_file(long r, int f) { return f == 0 && (r - 1) % every == 0; }

static enum kind kind_of(fuse_ino_t ino, long *r, int *f) {
    fuse_ino_t first_field = 3 + records, first_file = first_field + records * nfields;
    if (ino == 1) return ROOT;
    if (ino == 2) return REPO;
    if (ino < first_field) { *r = ino - 2; return RECORD; }
    if (ino < first_file) { long x = ino - first_field; *r = x / nfields + 1; *f = x % nfields; return FIELD; }
    *r = ino - first_file;
    return *r <= records ? FILE_ : NONE;
}

static void attrs(fuse_ino_t ino, struct stat *st) {
    long r; int f;
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    if (kind_of(ino, &r, &f) == FILE_) { st->st_mode = S_IFREG | 0644; st->st_nlink = 1; st->st_size = 6; }
    else { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; }
}

static void entry_param(fuse_ino_t ino, struct fuse_entry_param *e) {
    memset(e, 0, sizeof *e);
    e->ino = ino;
    e->attr_timeout = 1.0;
    e->entry_timeout = 1.0;
    attrs(ino, &e->attr);
}

static fuse_ino_t child(fuse_ino_t parent, const char *name) {
    long r = 0; int f = 0; char want[64];
    switch (kind_of(parent, &r, &f)) {
    case ROOT: {
        if (!strcmp(name, ".repository")) return 2;
        char *end; long x = strtol(name, &end, 10);
        return (*name && !*end && x >= 1 && x <= records) ? rec_ino(x) : 0;
    }
    case RECORD:
        for (int i = 0; i < nfields; i++) if (!strcmp(name, fields[i])) return fld_ino(r, i);
        return 0;
    case FIELD:
        snprintf(want, sizeof want, "doc-%ld.txt", r);
        return has_file(r, f) && !strcmp(name, want) ? file_ino(r) : 0;
    default:
        return 0;
    }
}

/* The i-th entry of a folder after "." and ".."; 0 past its end. */
static int nth(fuse_ino_t dir, long i, char *name, size_t len, fuse_ino_t *ino) {
    long r = 0; int f = 0;
    switch (kind_of(dir, &r, &f)) {
    case ROOT:
        if (i == 0) { snprintf(name, len, ".repository"); *ino = 2; return 1; }
        if (i > records) return 0;
        snprintf(name, len, "%ld", i); *ino = rec_ino(i); return 1;
    case RECORD:
        if (i >= nfields) return 0;
        snprintf(name, len, "%s", fields[i]); *ino = fld_ino(r, (int)i); return 1;
    case FIELD:
        if (i != 0 || !has_file(r, f)) return 0;
        snprintf(name, len, "doc-%ld.txt", r); *ino = file_ino(r); return 1;
    default:
        return 0;
    }
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    fuse_ino_t ino = child(parent, name);
    struct fuse_entry_param e;
    if (!ino) { fuse_reply_err(req, ENOENT); return; }
    entry_param(ino, &e);
    fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct stat st;
    (void)fi;
    attrs(ino, &st);
    fuse_reply_attr(req, &st, 1.0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    fuse_reply_open(req, fi);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino; (void)fi;
    fuse_reply_err(req, 0);
}

/* Entries from offset `off` (0 and 1 are "." and ".."; entry n carries offset n + 1). */
static void list(fuse_req_t req, fuse_ino_t dir, size_t size, off_t off, int plus) {
    char *buf = malloc(size), name[80];
    size_t used = 0;
    if (!buf) { fuse_reply_err(req, ENOMEM); return; }
    for (long n = off;; n++) {
        fuse_ino_t ino;
        size_t got;
        if (n < 2) { snprintf(name, sizeof name, n ? ".." : "."); ino = n ? 1 : dir; }
        else if (!nth(dir, n - 2, name, sizeof name, &ino)) break;
        if (plus) {
            struct fuse_entry_param e;
            entry_param(ino, &e);
            if (n < 2) e.ino = 0;  /* the kernel neither links nor counts "." and ".." */
            got = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, n + 1);
        } else {
            struct stat st;
            attrs(ino, &st);
            got = fuse_add_direntry(req, buf + used, size - used, name, &st, n + 1);
        }
        if (got > size - used) break;
        used += got;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    list(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    list(req, ino, size, off, 1);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup, .getattr = op_getattr, .opendir = op_opendir, .releasedir = op_releasedir,
    .readdir = op_readdir, .readdirplus = op_readdirplus,
};

int main(int argc, char *argv[]) {
    int sep = 0, ret;
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "--")) { sep = i; break; }
    if (sep < 4 || sep - 3 > MAX_FIELDS) {
        fprintf(stderr, "usage: %s RECORDS EVERY FIELD... -- MOUNTPOINT [-f] [-s]\n", argv[0]);
        return 2;
    }
    records = atol(argv[1]);
    every = atol(argv[2]);
    nfields = sep - 3;
    for (int i = 0; i < nfields; i++) fields[i] = argv[3 + i];
    if (records < 1 || every < 1) { fprintf(stderr, "%s: RECORDS and EVERY must be positive\n", argv[0]); return 2; }
    argv[sep] = argv[0];
    struct fuse_args args = FUSE_ARGS_INIT(argc - sep, argv + sep);
    struct fuse_cmdline_opts opts;
    if (fuse_parse_cmdline(&args, &opts) != 0 || !opts.mountpoint) return 2;
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, opts.mountpoint) != 0) return 1;
    fuse_daemonize(opts.foreground);
    if (opts.singlethread) {
        ret = fuse_session_loop(se);
    } else {
        struct fuse_loop_config *cfg = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(cfg, 0);
        fuse_loop_cfg_set_max_threads(cfg, 10);
        ret = fuse_session_loop_mt(se, cfg);
        fuse_loop_cfg_destroy(cfg);
    }
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    free(opts.mountpoint);
    fuse_opt_free_args(&args);
    return ret ? 1 : 0;
}
