"""The HTTP side: the FastAPI app, its schemas and auth, the HTTP client and the CLI."""
