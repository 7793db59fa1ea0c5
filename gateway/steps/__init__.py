"""Pipeline steps: one module each, ordered in `gateway.pipeline`."""
