// imlog-bench-seal: what sealing a message's text costs the engine, and opening it a reader
// (engine/include/imlog/engine/data_keys.h): seal() and unseal() of N texts of a given size with
// one key, and key_for_writing() of a user already in the cache, each timed over the whole run.
//
//   imlog-bench-seal [--messages N] [--bytes B]

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "imlog/engine/data_keys.h"
#include "imlog/testing/support.h"

namespace {

using Clock = std::chrono::steady_clock;

double ns_per(Clock::time_point t0, size_t n) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog-bench-seal: the cost of sealing and opening a message's text"};
  size_t messages = 1'000'000;
  size_t bytes = 100;
  app.add_option("--messages", messages, "texts sealed and opened (default 1,000,000)");
  app.add_option("--bytes", bytes, "bytes of each text (default 100)");
  CLI11_PARSE(app, argc, argv);

  imlog::testing::TempDir dir("imlog-bench-seal");
  auto store = imlog::open_rocksdb_key_store(dir.str());
  if (!store) return std::fprintf(stderr, "%s\n", store.error().to_string().c_str()), 1;
  imlog::CachedKeyStore keys(std::move(*store), std::chrono::minutes(10));
  auto first = keys.key_for_writing(7);
  if (!first) return std::fprintf(stderr, "%s\n", first.error().to_string().c_str()), 1;

  std::string text(bytes, 'x');
  std::vector<std::string> sealed(messages);
  auto t0 = Clock::now();
  for (size_t i = 0; i < messages; ++i) {
    auto key = keys.key_for_writing(7);  // the engine asks the cache for every message
    sealed[i] = imlog::seal(*key, text, {i, "content"});
  }
  double seal_ns = ns_per(t0, messages);
  t0 = Clock::now();
  size_t opened = 0;
  for (size_t i = 0; i < messages; ++i) {
    auto key = keys.key_for_reading(7);
    auto t = imlog::unseal(**key, sealed[i], {i, "content"});
    opened += t ? t->size() : 0;
  }
  double open_ns = ns_per(t0, messages);
  if (opened != messages * bytes) return std::fprintf(stderr, "a sealed text did not open\n"), 1;
  std::printf("%zu texts of %zu bytes: seal (with the cached key) %.0f ns, open %.0f ns each\n", messages, bytes,
              seal_ns, open_ns);
  std::printf("RESULT {\"bench\":\"seal\",\"messages\":%zu,\"bytes\":%zu,\"seal_ns\":%.0f,\"open_ns\":%.0f}\n", messages,
              bytes, seal_ns, open_ns);
  return 0;
}
