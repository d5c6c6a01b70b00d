/* Start-up cost of a preloaded library in a process that never uses the GPU, measured the
 * way users pay it: posix_spawn(/bin/true) with the parent's whole environment (so
 * LD_LIBRARY_PATH, the limits and whatever else the caller exported reach the child) plus
 * LD_PRELOAD=<variant>. Variants take turns within each round (so drift hits them alike);
 * per variant: median, p10, p90, and the median of the per-round differences to the first
 * variant (the "added" figure). Used by scripts/startup-cost.sh.
 *   spawn-true ROUNDS none|LIB [LIB...] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The parent's environment without LD_PRELOAD, plus `preload` unless it is "none". */
static char **child_env(const char *preload) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 2, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0) env[k++] = environ[i];
    if (strcmp(preload, "none") != 0) {
        size_t len = strlen(preload) + 12;
        env[k] = malloc(len);
        snprintf(env[k], len, "LD_PRELOAD=%s", preload);
        k++;
    }
    env[k] = NULL;
    return env;
}

static double quantile(double *sorted, int n, double q) { return sorted[(int)(q * (n - 1))]; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ROUNDS none|LIB [LIB...]\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]);
    int variants = argc - 2;
    double *t = malloc(sizeof(double) * rounds * variants);
    char ***envs = malloc(sizeof(char **) * variants);
    for (int v = 0; v < variants; v++) envs[v] = child_env(argv[2 + v]);
    char *args[] = {"/bin/true", NULL};
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < variants; v++) {
            /* Alternate the order within a round so no variant always goes first. */
            int k = (r & 1) ? variants - 1 - v : v;
            double t0 = now_us();
            pid_t pid;
            if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, envs[k]) != 0) {
                perror("posix_spawn");
                return 1;
            }
            int st;
            waitpid(pid, &st, 0);
            t[k * rounds + r] = now_us() - t0;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "/bin/true failed under %s\n", argv[2 + k]);
                return 1;
            }
        }
    double *diff = malloc(sizeof(double) * rounds);
    double *sorted = malloc(sizeof(double) * rounds);
    printf("%-64s %9s %9s %9s %9s\n", "LD_PRELOAD", "median", "p10", "p90", "added");
    for (int v = 0; v < variants; v++) {
        for (int r = 0; r < rounds; r++) diff[r] = t[v * rounds + r] - t[r];
        memcpy(sorted, t + v * rounds, sizeof(double) * rounds);
        qsort(sorted, rounds, sizeof(double), cmp);
        qsort(diff, rounds, sizeof(double), cmp);
        printf("%-64s %7.1fus %7.1fus %7.1fus %+7.1fus\n", argv[2 + v], quantile(sorted, rounds, 0.5),
               quantile(sorted, rounds, 0.1), quantile(sorted, rounds, 0.9),
               quantile(diff, rounds, 0.5));
    }
    return 0;
}
