"""The project service (RPC queue `rpc.project`)."""
