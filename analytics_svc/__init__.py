"""The analytics service (RPC queue `rpc.analytics`)."""
