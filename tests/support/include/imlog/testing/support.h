#pragma once
// Small pieces every test binary uses: temporary directories, waiting on a condition with a
// deadline (never a bare sleep), child processes that can be killed for real, and the path of
// the built binaries. Not thread-safe unless said.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace imlog::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction by the process that
// made it (a forked child that exits leaves it to its parent).
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "imlog-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string str() const { return path_.string(); }

 private:
  pid_t owner_;
  std::filesystem::path path_;
};

// Polls `condition` every few milliseconds until it holds or `deadline` passes; returns whether it
// held. For conditions that have no notification to wait on (another process's output).
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline = std::chrono::seconds(10));

// How many times longer than on a plain build a deadline bound by the code's speed should be: 10
// under TSan, 3 under ASan+UBSan and on the coverage build, else 1, from IMLOG_SANITIZE and
// IMLOG_COVERAGE (which scripts/test --sanitize and --coverage export). Only for deadlines that
// wait on throughput; a deadline that is the behaviour under test (a time-out the server must
// keep) stays as it is.
int sanitizer_slowdown();
template <class Rep, class Period>
std::chrono::duration<Rep, Period> scaled(std::chrono::duration<Rep, Period> d) {
  return d * sanitizer_slowdown();
}

// For a child right after fork: it gets SIGKILL when the thread that forked it ends — the test
// process killed by ctest's time-out included — so no server a test started outlives the test.
// `parent` is getpid() taken before the fork; if it already died, the child exits at once.
void die_with_parent(pid_t parent);

// A child process with its stdout readable line by line. The destructor kills it (SIGKILL) if
// it is still running, and it is killed when this process dies (die_with_parent); Linux ties
// that to the calling thread, so start processes from a thread that outlives them (the main one).
class Subprocess {
 public:
  // Starts argv[0] with the given arguments; extra environment entries are "NAME=value".
  static Subprocess start(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {});
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  ~Subprocess();

  [[nodiscard]] pid_t pid() const { return pid_; }
  // The next line of stdout without its newline, or nullopt at end of output or after `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Sends a signal.
  void signal(int sig);
  // Waits for exit; returns the exit status as from waitpid (use WIFEXITED etc.), or nullopt on
  // time-out.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGKILL and reap.
  void kill();

 private:
  Subprocess() = default;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  bool reaped_ = false;
};

// A command run to its end: its exit status (-1 if it did not exit normally) and its output,
// stdout and stderr together (a note is added when a signal ended it or it did not end).
struct CommandRun {
  int status = -1;
  std::string out;
};
// Runs argv (quoted for /bin/sh) and reads all it prints: up to 300 s between lines, then up to
// 60 s for it to exit.
CommandRun run_command(const std::vector<std::string>& argv);

// The directory holding the built executables (imlog, imlog-kafka-mock), from the build system.
std::filesystem::path binary_dir();

// True when running under CI (CI=true): a missing server is then a failure, never a skip.
bool in_ci();

// A free TCP port on 127.0.0.1 at the time of the call, below the kernel's ephemeral range (so no
// outgoing connection takes it before the test's server binds it).
int free_port();

}  // namespace imlog::testing
