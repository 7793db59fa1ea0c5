"""Step 10: hand the request to whoever answers it (a service over RPC; later, upstreams)."""
