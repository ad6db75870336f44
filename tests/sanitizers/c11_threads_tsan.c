// Linked into every executable of a TSan build (scripts/test --sanitize thread).
//
// Debian's librdkafka runs its threads on C11 <threads.h> (thrd_create, mtx_lock, cnd_wait, ...),
// and gcc 12's ThreadSanitizer does not intercept those: glibc starts the thread through its
// internal pthread_create, so TSan has no state for it and crashes at the thread's first malloc
// (imlog-kafka-mock died at start), and locks taken through mtx_lock would be invisible to it. The
// definitions below take the place of glibc's for librdkafka (the executable's symbols come first)
// and call the pthread functions TSan does intercept; glibc's mtx_t, cnd_t and once_flag are its
// pthread_mutex_t, pthread_cond_t and pthread_once_t, so the casts are exact.

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int c11_result(int err) {
  switch (err) {
    case 0: return thrd_success;
    case EBUSY: return thrd_busy;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    default: return thrd_error;
  }
}

struct start {
  thrd_start_t func;
  void* arg;
};

static void* run_start(void* p) {
  struct start s = *(struct start*)p;
  free(p);
  return (void*)(intptr_t)s.func(s.arg);
}

int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
  struct start* s = malloc(sizeof *s);
  if (s == NULL) return thrd_nomem;
  s->func = func;
  s->arg = arg;
  int err = pthread_create((pthread_t*)thr, NULL, run_start, s);
  if (err != 0) free(s);
  return c11_result(err);
}

int thrd_join(thrd_t thr, int* res) {
  void* out = NULL;
  int err = pthread_join((pthread_t)thr, &out);
  if (err == 0 && res != NULL) *res = (int)(intptr_t)out;
  return c11_result(err);
}

int thrd_detach(thrd_t thr) { return c11_result(pthread_detach((pthread_t)thr)); }

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if (type & mtx_recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  int err = pthread_mutex_init((pthread_mutex_t*)m, &attr);
  pthread_mutexattr_destroy(&attr);
  return c11_result(err);
}

int mtx_lock(mtx_t* m) { return c11_result(pthread_mutex_lock((pthread_mutex_t*)m)); }
int mtx_trylock(mtx_t* m) { return c11_result(pthread_mutex_trylock((pthread_mutex_t*)m)); }
int mtx_timedlock(mtx_t* restrict m, const struct timespec* restrict at) {
  return c11_result(pthread_mutex_timedlock((pthread_mutex_t*)m, at));
}
int mtx_unlock(mtx_t* m) { return c11_result(pthread_mutex_unlock((pthread_mutex_t*)m)); }
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy((pthread_mutex_t*)m); }

int cnd_init(cnd_t* c) { return c11_result(pthread_cond_init((pthread_cond_t*)c, NULL)); }
int cnd_signal(cnd_t* c) { return c11_result(pthread_cond_signal((pthread_cond_t*)c)); }
int cnd_broadcast(cnd_t* c) { return c11_result(pthread_cond_broadcast((pthread_cond_t*)c)); }
int cnd_wait(cnd_t* c, mtx_t* m) { return c11_result(pthread_cond_wait((pthread_cond_t*)c, (pthread_mutex_t*)m)); }
int cnd_timedwait(cnd_t* restrict c, mtx_t* restrict m, const struct timespec* restrict at) {
  return c11_result(pthread_cond_timedwait((pthread_cond_t*)c, (pthread_mutex_t*)m, at));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy((pthread_cond_t*)c); }

void call_once(once_flag* flag, void (*func)(void)) { pthread_once((pthread_once_t*)flag, func); }
