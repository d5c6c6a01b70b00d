#!/bin/bash
# Why libvgpu's watcher thread is created with the program's pthread_create under LD_AUDIT
# (docs/AMD.md, "LD_AUDIT mode", Threads), shown without libvgpu: an rtld-audit library
# whose thread frees, through the program's free, blocks the program's own thread
# allocated (as libvgpu's watcher and the program share the vendor libraries). With the
# thread from the audit namespace's libc (MODE=own) the program's libc takes the process
# for single-threaded and skips malloc's locks: the heap is corrupted; with the program's
# pthread_create (MODE=program) it is not.   Usage: scripts/audit-thread-demo.sh [RUNS]
set -eu
runs=${1:-20}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/aud.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
static void (*program_free)(void *);
static _Atomic(void *) *slots;
static void *drain(void *arg) {
    for (;;)
        for (int i = 0; i < 64; i++) {
            void *p = atomic_exchange(&slots[i], NULL);
            if (p) program_free(p);
        }
    return arg;
}
unsigned la_version(unsigned v) { return v; }
void la_preinit(uintptr_t *cookie) {
    (void)cookie;
    void *libc = dlmopen(LM_ID_BASE, "libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    program_free = dlsym(libc, "free");
    slots = dlsym(dlmopen(LM_ID_BASE, NULL, RTLD_NOW | RTLD_NOLOAD), "slots");
    if (!slots) return; /* not the demo program (timeout, a shell) */
    pthread_t t;
    const char *mode = getenv("MODE");
    if (mode && mode[0] == 'p') {
        int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) =
            dlsym(libc, "pthread_create");
        create(&t, NULL, drain, NULL);
    } else {
        pthread_create(&t, NULL, drain, NULL);
    }
}
EOF
cat >"$dir/prog.c" <<'EOF'
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
_Atomic(void *) slots[64];
int main(void) {
    for (long n = 0; n < 5000000; n++) {
        void *p = malloc(24 + (n % 13) * 72), *q = malloc(300 + n % 500);
        free(atomic_exchange(&slots[n % 64], p));
        free(q);
    }
    puts("done");
    return 0;
}
EOF
cc -shared -fPIC -O2 -o "$dir/aud.so" "$dir/aud.c"
cc -O2 -rdynamic -o "$dir/prog" "$dir/prog.c"
for mode in own program; do
    failed=0
    for _ in $(seq "$runs"); do
        # A subshell: the shell's "Aborted" notice goes to /dev/null with the rest.
        (MODE=$mode LD_AUDIT="$dir/aud.so" timeout 60 "$dir/prog") >/dev/null 2>&1 ||
            failed=$((failed + 1))
    done
    echo "MODE=$mode: $failed of $runs runs died"
done
