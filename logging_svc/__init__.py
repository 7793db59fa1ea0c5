"""The logging service (RPC queue `rpc.logging`)."""
