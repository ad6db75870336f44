// Errors the SDK hands to its caller: the server's `{code, message}` (REST body or WebSocket
// `error` frame), with whether retrying the same request can help (docs/clients.md, "Errors").

/** Codes after which the same request, retried later with the same client_msg_id, may succeed. */
const kRetryable = new Set(["timeout", "unavailable", "overloaded", "rate_limited", "network"]);

export class ImlogError extends Error {
  /** The server's code (`not_member`, `timeout`, ...), or `network` when no answer came. */
  readonly code: string;
  /** The HTTP status for REST; undefined for WebSocket errors and network failures. */
  readonly status: number | undefined;
  /** When to retry, from `Retry-After` or `retry_after_ms`. */
  readonly retryAfterMs: number | undefined;

  constructor(code: string, message: string, status?: number, retryAfterMs?: number) {
    super(message);
    this.name = "ImlogError";
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }

  /** True when retrying the same request (same client_msg_id) may succeed. */
  get retryable(): boolean {
    return kRetryable.has(this.code);
  }
}
