/* Preloaded by .ci/clock-matrix before libfaketime 0.9.10.
 *
 * With FAKETIME_DONT_FAKE_MONOTONIC=1, libfaketime still rewrites absolute
 * CLOCK_MONOTONIC deadlines of clock_nanosleep as if that clock were faked, so
 * Python's time.sleep (an absolute monotonic sleep) fails with EINVAL. This wrapper
 * sends monotonic sleeps straight to the kernel and every other clock on to
 * libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req,
                    struct timespec *rem) {
  static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
  if (id == CLOCK_MONOTONIC) {
    /* clock_nanosleep returns the error number rather than setting errno */
    long r = syscall(SYS_clock_nanosleep, id, flags, req, rem);
    return r == 0 ? 0 : errno;
  }
  if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
  return next(id, flags, req, rem);
}
