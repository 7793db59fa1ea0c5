"""The live monitor: Socket.IO `/monitor` (docs/api.md section 11) and its page (11.1)."""
