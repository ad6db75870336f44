#pragma once
// What the sequencer's cross-component tests share (tests/sequencer_*_test.cpp, and the crash
// test's child program): the engine's topics, commands built with the FlatBuffers object API,
// a reader of the log that applies the validity rule (EpochFilter) exactly as every production
// reader does, and an engine node (LogDirectory + Sequencer) over a log.
//
// An ack means durable and valid (docs/architecture.md, "Ack when durable"): the sequencer answers
// every command (Accepted, Duplicate, Refused) on im.deliver.<gateway> once its batch is durable,
// and each valid event carries its command's reply_to. LogTail reads both, so a test sees what
// the log and a gateway would.
//
// Threading: not thread-safe; each object belongs to the test thread that made it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/sequencer.h"
#include "imlog/engine/validity.h"
#include "imlog/schema/codec.h"

namespace imlog::testing {

// ---- topics ---------------------------------------------------------------------------------

// Creates im.commands and im.events with `partitions` partitions (durable) and the delivery topic
// im.deliver.<gateway> (1 partition, durable=false), or checks they exist so.
Status create_engine_topics(EventLog& log, int32_t partitions, std::string_view gateway);

// ---- commands ---------------------------------------------------------------------------------

// An envelope with stream, actor, client_msg_id and reply_to {gateway, request_id}; the command
// itself is set by the helpers below.
fb::CommandEnvelopeT command_envelope(std::string stream, uint64_t actor, std::string client_msg_id,
                                      std::string gateway, uint64_t request_id);

fb::CommandEnvelopeT send_message(std::string stream, uint64_t actor, std::string client_msg_id,
                                  std::string content, std::string gateway, uint64_t request_id);
// On names_<bucket of username>, actor 0.
fb::CommandEnvelopeT register_user(const std::string& username, std::string client_msg_id,
                                   std::string gateway, uint64_t request_id);
// A public group unless told otherwise: the harness's workloads (the crash load, the model test,
// the sinks' script) have users join by themselves.
fb::CommandEnvelopeT create_group(uint64_t group_id, uint64_t actor, std::vector<uint64_t> members,
                                  std::string client_msg_id, std::string gateway,
                                  uint64_t request_id, fb::JoinPolicy policy = fb::JoinPolicy::Public);
fb::CommandEnvelopeT join_group(uint64_t group_id, uint64_t actor, std::string client_msg_id,
                                std::string gateway, uint64_t request_id);
fb::CommandEnvelopeT leave_group(uint64_t group_id, uint64_t actor, std::string client_msg_id,
                                 std::string gateway, uint64_t request_id);

// The crash test's load (tests/sequencer_crash_child.cpp): command i as a pure function of i, so a
// restarted client re-sends exactly the same command. client_msg_id "c-<i>", request id i + 1.
// Commands 0..2 create group_1..group_3 (user 1), 3..11 make users 2..4 join each group, the rest
// are messages to `world` (users 1..6) or to a group (its members 1..4). All are acceptable when
// handled in order per stream.
fb::CommandEnvelopeT crash_load_command(uint64_t i, const std::string& gateway);
// The index of a crash-load client_msg_id ("c-<i>"), or nullopt.
std::optional<uint64_t> crash_load_index(std::string_view client_msg_id);

// Appends the commands to im.commands, keyed by their stream, in order, as one batch; waits for
// the log's acknowledgement.
Status submit(EventLog& log, const std::vector<fb::CommandEnvelopeT>& commands);

// ---- reading the log --------------------------------------------------------------------------

// One record of im.events as a test looks at it.
struct SeenEvent {
  int32_t partition = 0;
  int64_t offset = 0;
  fb::Event type = fb::Event::NONE;
  std::string stream;
  uint64_t seq = 0;
  uint64_t event_id = 0;
  uint64_t actor = 0;
  uint64_t epoch = 0;
  std::string client_msg_id;
  int64_t client_sent_at = 0;
  std::string gateway;      // reply_to.gateway ("" when absent)
  uint64_t request_id = 0;  // reply_to.request_id
  std::string content;      // MessageAppended: its text, opened with test_keys()
  uint64_t result_id = 0;   // UserRegistered: user id; GroupCreated: group id
  uint64_t through_seq = 0; // MessagesExpired
  uint64_t token = 0;       // EpochStarted
  std::string writer;       // EpochStarted
  std::string code;         // CommandRefused: the refusal's reason code
  std::string message;      // CommandRefused: its text
};

// Reads im.events (every partition, from offset 0) and im.deliver.<gateway> as they grow, and
// sorts what it reads with the EpochFilter: valid events, rejected (zombie) events, epoch markers,
// valid refusal records (CommandRefused), and the replies to commands.
class LogTail {
 public:
  // `gateway` empty: im.events only.
  static Result<std::unique_ptr<LogTail>> open(EventLog& log, std::string gateway);
  ~LogTail();

  // Reads what is there, waiting up to `timeout` for the first record.
  Status poll(std::chrono::milliseconds timeout);
  // Polls until `done()` holds or `deadline` passes; returns whether it held. The wait is the
  // consumers' poll time-out, never a sleep.
  Result<bool> wait_for(const std::function<bool()>& done, std::chrono::milliseconds deadline);
  // Polls until the tail has read to the ends the log reports now.
  Status read_to_end(std::chrono::milliseconds deadline = std::chrono::seconds(30));

  // Valid events other than control records (epoch markers, refusal records), in the order read
  // (offset order per partition): the history every reader sees.
  [[nodiscard]] const std::vector<SeenEvent>& valid() const { return valid_; }
  // Valid CommandRefused records: the refusals the sequencer remembers.
  [[nodiscard]] const std::vector<SeenEvent>& refusals() const { return refusals_; }
  // Events the EpochFilter rejected.
  [[nodiscard]] const std::vector<SeenEvent>& rejected() const { return rejected_; }
  [[nodiscard]] const std::vector<SeenEvent>& markers() const { return markers_; }
  [[nodiscard]] const std::vector<fb::CommandReplyT>& replies() const { return replies_; }
  // Undecodable records seen (each is a failure of whoever wrote it).
  [[nodiscard]] const std::vector<std::string>& problems() const { return problems_; }

  // The valid event acking request `request_id` of this tail's gateway, if read.
  [[nodiscard]] const SeenEvent* event_for_request(uint64_t request_id) const;
  // Replies to request `request_id`, in the order read.
  [[nodiscard]] std::vector<const fb::CommandReplyT*> replies_for(uint64_t request_id) const;
  // Whether request `request_id` has its answer read: its event, or a reply other than an ack (an
  // ack without its event means the event is appended but not read yet).
  [[nodiscard]] bool answered(uint64_t request_id) const;

 private:
  LogTail() = default;
  void take_event(const Record& r);
  void take_delivery(const Record& r);

  EventLog* log_ = nullptr;
  std::string gateway_;
  int32_t partitions_ = 0;
  std::unique_ptr<Consumer> events_;
  std::unique_ptr<Consumer> deliveries_;
  std::vector<int64_t> next_event_offset_;
  int64_t next_delivery_offset_ = 0;
  EpochFilter filter_;  // the one validity rule (validity.h), as every production reader applies it
  std::vector<SeenEvent> valid_, rejected_, markers_, refusals_;
  std::vector<fb::CommandReplyT> replies_;
  std::vector<std::string> problems_;
  std::map<uint64_t, size_t> by_request_;  // request id → index in valid_ (this gateway's)
};

// The invariants of the event log over a set of valid events; each violation is one line naming
// it (empty: all hold).
//   - per stream, the timeline events (seq != 0) have seq 1, 2, 3, ... in log order;
//   - no (stream, actor, client_msg_id) appears twice;
//   - no event id appears twice;
// and, given the valid refusal records (LogTail::refusals()), a refused command stays refused:
//   - no (stream, actor, client_msg_id) has two refusal records, or a refusal record and an event;
//   - a refusal record takes no seq and names a reason code.
std::vector<std::string> check_log_invariants(const std::vector<SeenEvent>& valid,
                                              const std::vector<SeenEvent>& refusals = {});

// Per stream, the highest seq among valid events.
std::map<std::string, uint64_t> last_seqs(const std::vector<SeenEvent>& valid);

// ---- data keys --------------------------------------------------------------------------------

// The data keys of this test process (data_keys.h): a RocksDB key store in a temporary directory
// of its own, opened on first use and kept until the process exits. Every EngineNode seals with
// it, so a test's projectors and readers open what any of its engines sealed.
KeyStore& test_keys();

// ---- an engine node ---------------------------------------------------------------------------

// A LogDirectory and a Sequencer over one log, started together, stopped (sequencer first) on
// stop() or destruction. Must be destroyed before the log.
class EngineNode {
 public:
  // `transports`: where the sequencer reads commands and answers (not owned; must outlive the
  // node). Null: the distributed mode's, over `log` (im.commands, im.deliver.<gateway>), so a test
  // submits with testing::submit() and reads answers with LogTail.
  // `keys`: what the sequencer seals with (not owned); null: test_keys(). A test that erases a
  // user gives its own, as user ids repeat across the logs of one process.
  static Result<std::unique_ptr<EngineNode>> start(EventLog& log, EngineConfig config,
                                                   const Clock& clock = SystemClock::instance(),
                                                   const SequencerTransports* transports = nullptr,
                                                   KeyStore* keys = nullptr);
  ~EngineNode();

  [[nodiscard]] Sequencer& sequencer() { return *sequencer_; }
  [[nodiscard]] LogDirectory& directory() { return *directory_; }
  void stop();

  // Waits (a condition with a deadline) until the sequencer owns `partitions` partitions.
  bool wait_for_partitions(int32_t partitions,
                           std::chrono::milliseconds deadline = std::chrono::seconds(30));

 private:
  EngineNode() = default;
  // The distributed mode's transports (im.commands, im.deliver.<gateway>), so a test submits and
  // reads answers on the log as a gateway there does.
  std::unique_ptr<CommandTransport> commands_;
  std::unique_ptr<DeliveryTransport> deliveries_;
  std::unique_ptr<LogDirectory> directory_;
  std::unique_ptr<Sequencer> sequencer_;
};

}  // namespace imlog::testing
