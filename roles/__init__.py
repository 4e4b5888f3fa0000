"""The roles a Fechatter process can take: the stateless HTTP api and the SSE notify role."""
