"""Integration tier: real SQLite files, worker processes and an aiohttp server."""
