// The test support's own promises (tests/support): here, that no process a test starts outlives
// it — a test binary killed by ctest's time-out must not leave its `imlog serve` children behind.

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

// Whether `pid` is a running process (a zombie waiting for its reaper counts as gone).
bool running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

TEST(Subprocess, DiesWhenTheProcessThatStartedItIsKilled) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    // Stands for a test binary: starts a long-lived child, reports its pid, waits to be killed.
    // No gtest here, and _exit without the test process's destructors.
    ::close(fds[0]);
    auto child = Subprocess::start({"/bin/sleep", "600"});
    pid_t pid = child.pid();
    if (::write(fds[1], &pid, sizeof pid) != sizeof pid) ::_exit(2);
    ::pause();
    ::_exit(3);
  }
  ::close(fds[1]);
  pid_t grandchild = 0;
  pollfd p{fds[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "the stand-in test binary reported no child";
  ASSERT_EQ(::read(fds[0], &grandchild, sizeof grandchild), static_cast<ssize_t>(sizeof grandchild));
  ::close(fds[0]);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(running(grandchild));

  ::kill(parent, SIGKILL);  // as ctest's time-out does
  int status = 0;
  ASSERT_EQ(::waitpid(parent, &status, 0), parent);
  bool gone = wait_until([&] { return !running(grandchild); }, 5s);
  if (!gone) ::kill(grandchild, SIGKILL);  // don't leave it behind either way
  EXPECT_TRUE(gone) << "the child (pid " << grandchild << ") outlived the process that started it";
}

TEST(Subprocess, AChildWhoseParentDiedBeforeItCouldAskExitsAtOnce) {
  // die_with_parent given a pid that is not the parent stands for the parent dying between fork
  // and prctl: getppid then names another process, and the child must not run on.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    die_with_parent(::getpid());
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 126) << "the orphaned child went on";
}

}  // namespace
}  // namespace imlog::testing
