#pragma once
// The result type of every fallible call in imlog: expected failures are values, never exceptions
// (those only at start-up and config parsing). An Error carries a per-component code, a message
// that names the thing at fault, and whether the caller may retry the same call.

#include <string>
#include <system_error>
#include <utility>

#include <tl/expected.hpp>

namespace imlog {

class [[nodiscard]] Error {
 public:
  Error() = default;
  Error(std::error_code code, std::string message, bool retryable = false)
      : code_(code), message_(std::move(message)), retryable_(retryable) {}

  [[nodiscard]] std::error_code code() const { return code_; }
  [[nodiscard]] const std::string& message() const { return message_; }
  // True when the same call may succeed if tried again (a broker down, a full queue).
  [[nodiscard]] bool retryable() const { return retryable_; }
  // "<category>: <message>" for logs and user-facing text.
  [[nodiscard]] std::string to_string() const;

  // Prefix the message with context, keeping code and retryability: "appending to im.events: ...".
  [[nodiscard]] Error with_context(std::string_view context) const;

 private:
  std::error_code code_;
  std::string message_;
  bool retryable_ = false;
};

template <class T>
using Result = tl::expected<T, Error>;

using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(Error e) { return tl::unexpected<Error>(std::move(e)); }

template <class E>
  requires std::is_error_code_enum_v<E> || std::is_error_condition_enum_v<E>
tl::unexpected<Error> fail(E code, std::string message, bool retryable = false) {
  return tl::unexpected<Error>(Error(make_error_code(code), std::move(message), retryable));
}

}  // namespace imlog

// Propagate an error from a Result-returning expression, or bind its value.
#define IMLOG_TRY(expr)                                              \
  do {                                                               \
    if (auto&& imlog_try_r_ = (expr); !imlog_try_r_) {               \
      return ::tl::unexpected<::imlog::Error>(imlog_try_r_.error()); \
    }                                                                \
  } while (0)
