"""Fechatter's shared core: configuration, storage, events, auth and the web base classes."""
