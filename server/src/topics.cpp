#include "topics.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/topic_settings.h"

namespace imlog {
namespace {

constexpr int kMockTimeoutSeconds = 30;

// One command line to the mock's control socket (tests/kafka_mock/main.cpp); the reply line.
Result<std::string> mock_command(const std::string& control, const std::string& line) {
  auto colon = control.rfind(':');
  if (colon == std::string::npos) {
    return fail(std::errc::invalid_argument,
                "config key `event_log.kafka.mock_control`: `" + control + "` is not host:port");
  }
  std::string host = control.substr(0, colon), port = control.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return fail(std::errc::invalid_argument, "Kafka mock control " + control + ": " + ::gai_strerror(rc));
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  timeval tv{kMockTimeoutSeconds, 0};
  if (fd >= 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  bool connected = fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  int err = errno;
  ::freeaddrinfo(res);
  if (!connected) {
    if (fd >= 0) ::close(fd);
    return fail(std::errc::connection_refused,
                "Kafka mock control " + control + ": cannot connect: " + std::strerror(err), true);
  }
  std::string out = line + "\n", reply;
  bool ok = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
  char buf[1024];
  while (ok && reply.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!ok) return fail(std::errc::io_error, "Kafka mock control " + control + ": no reply to `" + line + "`", true);
  reply.erase(reply.find('\n'));
  if (!reply.starts_with("ok")) {
    return fail(std::errc::invalid_argument, "Kafka mock control " + control + ": " + reply);
  }
  return reply;
}

}  // namespace

Status ensure_topic(EventLog& log, const EventLogSettings& s, const TopicSpec& spec, std::vector<std::string>* done) {
  if (s.backend == "kafka" && !s.mock_control.empty()) {
    auto reply = mock_command(s.mock_control, "create-topic " + spec.name + " " + std::to_string(spec.partitions));
    IMLOG_TRY(reply);
  }
  // On the mock the topic now exists, and create_topic only checks it; elsewhere it creates it.
  IMLOG_TRY(log.create_topic(spec));
  if (done) done->push_back(spec.name + " (" + std::to_string(spec.partitions) + " partitions)");
  return {};
}

Status create_topics(EventLog& log, const EventLogSettings& s, const std::vector<std::string>& gateway_ids,
                     std::vector<std::string>* done) {
  for (auto topic : {kCommandsTopic, kEventsTopic, kTasksTopic, kDeadLetterTopic}) {
    IMLOG_TRY(ensure_topic(log, s, TopicSpec{std::string(topic), s.partitions, true}, done));
  }
  for (const auto& id : gateway_ids) {
    IMLOG_TRY(ensure_topic(log, s, TopicSpec{delivery_topic(id), 1, false}, done));
  }
  return {};
}

Status verify_topic_settings(EventLog& log, const EventLogSettings& s) {
  if (s.backend != "kafka") return {};  // the embedded log never deletes a record
  if (!s.mock_control.empty()) {
    logger("server")->warn(
        "topic settings not checked: event_log.kafka.mock_control is set, and the Kafka mock has no DescribeConfigs "
        "(on a real cluster {} must keep retention.ms=-1, retention.bytes=-1, cleanup.policy=delete)",
        kEventsTopic);
    return {};
  }
  auto* source = dynamic_cast<TopicConfigSource*>(&log);  // KafkaLog is one
  if (source == nullptr) return fail(std::errc::invalid_argument, "the Kafka event log cannot read topic settings");
  return check_topic_settings(*source, {std::string(kEventsTopic)});
}

}  // namespace imlog
