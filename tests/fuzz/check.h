#pragma once
// A fuzz target's own assertion: a broken promise aborts, which libFuzzer reports as a crash with
// the input that caused it.

#include <cstdio>
#include <cstdlib>

#define IMLOG_FUZZ_CHECK(cond)                                                         \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
