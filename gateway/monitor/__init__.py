"""The live monitor: Socket.IO `/monitor` (API.md section 11) and its page (11.1)."""
