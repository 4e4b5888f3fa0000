"""What the tests build on: the API and SSE clients, and worlds made through the real services."""
