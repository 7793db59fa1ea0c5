"""The aiohttp gateway: one pipeline of steps in front of every route."""
