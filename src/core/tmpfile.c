// tmpfile.c — temporary files of atomic writers (DEST.tmp.PID beside DEST, renamed into place when complete):
// removed when SIGINT, SIGTERM or SIGHUP kills the process, and swept when a process that left one is gone
// (see core.h).
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TMP_SLOTS 16
#define TMP_PATH_MAX 4096

// Slot i is live while used[i]; its path is written before used[i] is set and kept until after it is cleared,
// so the signal handler reads only complete paths.
static char g_paths[TMP_SLOTS][TMP_PATH_MAX];
static volatile sig_atomic_t g_used[TMP_SLOTS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_live;                                   // registered slots (under g_mu)
static const int k_sigs[3] = {SIGINT, SIGTERM, SIGHUP};
static bool g_installed[3];                          // our handler replaced SIG_DFL for k_sigs[i]

void ll_tmp_remove_all(void) {
    for (int i = 0; i < TMP_SLOTS; i++)
        if (g_used[i]) unlink(g_paths[i]);
}

// The signal's default action would kill the process: remove the temporary files, then die of it as before
// (the shell sees 128 + the signal: 130 for Ctrl-C).
static void on_fatal_signal(int sig) {
    int e = errno;
    ll_tmp_remove_all();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    raise(sig); // pending until this handler returns (sig is blocked while it runs)
    errno = e;
}

// Signals left at their default action get on_fatal_signal while a file is registered; ignored or handled
// ones are the program's business (quantize stops cleanly on its own SIGINT handler).
static void install_handlers(bool on) {
    for (int i = 0; i < 3; i++) {
        struct sigaction cur, sa;
        sigaction(k_sigs[i], NULL, &cur);
        memset(&sa, 0, sizeof sa);
        sigemptyset(&sa.sa_mask);
        if (on && !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL) {
            sa.sa_handler = on_fatal_signal;
            sigaction(k_sigs[i], &sa, NULL);
            g_installed[i] = true;
        } else if (!on && g_installed[i]) {
            if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == on_fatal_signal) {
                sa.sa_handler = SIG_DFL;
                sigaction(k_sigs[i], &sa, NULL);
            }
            g_installed[i] = false;
        }
    }
}

int ll_tmp_register(const char *path) {
    if (strlen(path) >= TMP_PATH_MAX) return -1;
    pthread_mutex_lock(&g_mu);
    int slot = -1;
    for (int i = 0; i < TMP_SLOTS && slot < 0; i++)
        if (!g_used[i]) slot = i;
    if (slot >= 0) {
        strcpy(g_paths[slot], path);
        __atomic_signal_fence(__ATOMIC_SEQ_CST); // the path is complete before the handler can see the slot
        g_used[slot] = 1;
        if (g_live++ == 0) install_handlers(true);
    }
    pthread_mutex_unlock(&g_mu);
    return slot;
}

void ll_tmp_unregister(int slot) {
    if (slot < 0 || slot >= TMP_SLOTS) return;
    pthread_mutex_lock(&g_mu);
    if (g_used[slot]) {
        g_used[slot] = 0;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (--g_live == 0) install_handlers(false);
    }
    pthread_mutex_unlock(&g_mu);
}

// "NAME.tmp.DIGITS" for NAME = base: the PID, else 0.
static long stale_pid(const char *entry, const char *base) {
    size_t bl = strlen(base);
    if (strncmp(entry, base, bl) != 0 || strncmp(entry + bl, ".tmp.", 5) != 0) return 0;
    const char *d = entry + bl + 5;
    if (!*d || strlen(d) > 9) return 0;
    for (const char *c = d; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    return atol(d);
}

int ll_tmp_sweep_stale(const char *dest) {
    char dir[TMP_PATH_MAX];
    const char *slash = strrchr(dest, '/'), *base = slash ? slash + 1 : dest;
    if (!*base || strlen(dest) >= sizeof dir) return 0;
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dest) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - dest), dest);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = stale_pid(e->d_name, base);
        // Gone = no such process. A live PID (ours, another writer's, or a reused one) keeps its file.
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[TMP_PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) {
            ll_log(LL_LOG_WARN, "removed %s, a temporary file left by process %ld, which is no longer running", path,
                   pid);
            n++;
        }
    }
    closedir(d);
    return n;
}
