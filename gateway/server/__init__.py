"""The asyncio/aiohttp shell around the sans-I/O core."""
