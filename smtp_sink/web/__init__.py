"""The HTTP side: JSON API and the single-page web app (aiohttp)."""
