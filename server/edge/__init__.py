"""The edge: an ASGI application (Starlette routes, served by uvicorn) that
turns sockets and HTTP requests into calls on the sans-I/O core and executes
the core's commands. One module per concern; see docs/architecture.md."""
