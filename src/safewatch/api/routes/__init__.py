"""The API's routers, one module per resource; :mod:`safewatch.api.setup` includes them."""
