"""The auth service (RPC queue `rpc.auth`)."""
