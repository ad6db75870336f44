#include "commands.h"

#include <gtest/gtest.h>

#include <string>

namespace imlog::gw {
namespace {

using std::chrono::milliseconds;

fb::CommandReplyT refused(std::string code, std::string message = {}) {
  fb::CommandReplyT r;
  r.status = fb::ReplyStatus::Refused;
  r.code = std::move(code);
  r.message = std::move(message);
  return r;
}

// What a client is told when the bus gave no answer: a time-out may still take effect (504,
// retry with the same client_msg_id); a full engine queue and a refused transport are 503 with
// a hint when to try again.
TEST(CommandFailures, NoAnswerFromTheBusBecomesTimeoutOverloadedOrUnavailable) {
  auto timeout = failure_of(Reply(fail(BusErrc::timed_out, "no answer in 10 s", true)));
  EXPECT_EQ(timeout.status, 504u);
  EXPECT_EQ(timeout.code, "timeout");
  EXPECT_NE(timeout.message.find("same client_msg_id"), std::string::npos) << timeout.message;
  EXPECT_EQ(timeout.retry_after, milliseconds(0));

  auto overloaded = failure_of(Reply(fail(BusErrc::overloaded, "16384 commands queued", true)));
  EXPECT_EQ(overloaded.status, 503u);
  EXPECT_EQ(overloaded.code, "overloaded");
  EXPECT_NE(overloaded.message.find("16384 commands queued"), std::string::npos) << overloaded.message;
  EXPECT_EQ(overloaded.retry_after, kOverloadedRetry);

  auto unavailable = failure_of(Reply(fail(BusErrc::unavailable, "the transport is closed", true)));
  EXPECT_EQ(unavailable.status, 503u);
  EXPECT_EQ(unavailable.code, "unavailable");
  EXPECT_EQ(unavailable.retry_after, milliseconds(1000));
}

TEST(CommandFailures, ARefusalKeepsItsCodeAndMessageAndGetsItsStatus) {
  auto member = failure_of(Reply(refused("not_member", "you are not a member of group_7")));
  EXPECT_EQ(member.status, 403u);
  EXPECT_EQ(member.code, "not_member");
  EXPECT_EQ(member.message, "you are not a member of group_7");
  EXPECT_EQ(member.retry_after, milliseconds(0)) << "a refusal is final: no retry hint";

  auto bare = failure_of(Reply(refused("")));
  EXPECT_EQ(bare.code, "refused") << "a refusal without a code still names one";
  EXPECT_EQ(bare.status, 400u);
  EXPECT_NE(bare.message.find("refused"), std::string::npos) << "a refusal without a message gets one";

  auto engine_down = failure_of(Reply(refused("unavailable", "the engine did not write the command")));
  EXPECT_EQ(engine_down.status, 503u);
  EXPECT_EQ(engine_down.retry_after, milliseconds(1000)) << "the engine's `unavailable` asks for a retry";
}

TEST(CommandFailures, RefusalCodesMapToTheStatusesTheApiDocuments) {
  EXPECT_EQ(status_for_code("forbidden", true), 403u);
  EXPECT_EQ(status_for_code("not_found", true), 404u);
  EXPECT_EQ(status_for_code("no_pending_request", true), 404u);
  for (const char* conflict : {"already_exists", "already_member", "already_friends", "already_requested",
                               "owner_must_transfer", "group_full", "recall_window_passed"}) {
    EXPECT_EQ(status_for_code(conflict, true), 409u) << conflict;
  }
  EXPECT_EQ(status_for_code("too_large", true), 413u) << "the request's body is too large";
  EXPECT_EQ(status_for_code("too_large", false), 400u) << "a field is too long, not the body";
  EXPECT_EQ(status_for_code("invalid", true), 400u);
  EXPECT_EQ(status_for_code("rate_limited", true), 429u);
  EXPECT_EQ(status_for_code("overloaded", true), 503u);
  EXPECT_EQ(status_for_code("a_code_from_a_newer_engine", true), 400u);
}

TEST(CommandFailures, RetryAfterIsInWholeSecondsRoundedUp) {
  ApiReply reply;
  add_retry_after(reply, milliseconds(0));
  EXPECT_TRUE(reply.headers.empty()) << "no hint, no header";
  add_retry_after(reply, kOverloadedRetry);
  add_retry_after(reply, milliseconds(1001));
  ASSERT_EQ(reply.headers.size(), 2u);
  EXPECT_EQ(reply.headers[0], (std::pair<std::string, std::string>{"Retry-After", "1"}));
  EXPECT_EQ(reply.headers[1].second, "2");
}

}  // namespace
}  // namespace imlog::gw
