/* Test workload for pgo-record: burns CPU in known functions.
 *
 *   burn SECS       main -> level1 -> level2 -> hot_loop for SECS of CPU time
 *   threads SECS    two pthreads, each burning SECS
 *   fork SECS       a forked child burns SECS; a second child execs "burn SECS"
 *   attach SECS     thread A exists from the start, sleeps 0.4 s then burns; main sleeps 0.4 s,
 *                   starts thread B, and all three burn SECS
 *   forever         burns until killed
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

volatile unsigned long sink;

__attribute__((noinline)) void hot_loop(double seconds) {
    double end = thread_cpu_seconds() + seconds;
    unsigned long x = 1;
    for (;;) {
        for (int i = 0; i < 100000; i++) {
            x = x * 6364136223846793005UL + 1442695040888963407UL;
        }
        sink = x;
        if (seconds >= 0 && thread_cpu_seconds() >= end) break;
    }
}

__attribute__((noinline)) void level2(double s) { hot_loop(s); sink++; }
__attribute__((noinline)) void level1(double s) { level2(s); sink++; }

static double secs = 0.5;

static void *thread_main(void *arg) {
    if (arg) usleep(400000);
    level1(secs);
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "burn";
    if (argc > 2) secs = atof(argv[2]);
    if (!strcmp(mode, "burn")) {
        level1(secs);
    } else if (!strcmp(mode, "forever")) {
        level1(-1);
    } else if (!strcmp(mode, "threads")) {
        pthread_t a, b;
        pthread_create(&a, NULL, thread_main, NULL);
        pthread_create(&b, NULL, thread_main, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else if (!strcmp(mode, "fork")) {
        pid_t burner = fork();
        if (burner == 0) {
            level1(secs);
            _exit(0);
        }
        pid_t execer = fork();
        if (execer == 0) {
            char arg[32];
            snprintf(arg, sizeof arg, "%f", secs);
            execl("/proc/self/exe", argv[0], "burn", arg, (char *)NULL);
            _exit(126);
        }
        int status;
        waitpid(burner, &status, 0);
        waitpid(execer, &status, 0);
    } else if (!strcmp(mode, "attach")) {
        pthread_t a, b;
        pthread_create(&a, NULL, thread_main, (void *)1);
        usleep(400000);
        pthread_create(&b, NULL, thread_main, NULL);
        level1(secs);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
