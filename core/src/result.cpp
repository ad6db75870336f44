#include "imlog/core/result.h"

namespace imlog {

std::string Error::to_string() const {
  std::string out = code_.category().name();
  out += ": ";
  out += message_.empty() ? code_.message() : message_;
  if (retryable_) out += " (retryable)";
  return out;
}

Error Error::with_context(std::string_view context) const {
  std::string m(context);
  m += ": ";
  m += message_;
  return Error(code_, std::move(m), retryable_);
}

}  // namespace imlog
