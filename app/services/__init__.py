"""The services holding Fechatter's business rules, shared by both roles."""
