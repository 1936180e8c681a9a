// The grpc-js server options that decide what each call costs beyond sluice's own work. The
// bench's floor is built with them too, so that a ratio to it measures sluice, not grpc-js settings.
export const CALL_OPTIONS = {
  // A sidecar's callers are on the same host; keep messages small and connections cheap.
  'grpc.max_receive_message_length': 64 * 1024,
  // Per-connection and per-call bookkeeping for a channelz service that sluice does not serve.
  'grpc.enable_channelz': 0,
} as const;
