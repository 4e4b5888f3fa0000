"""Request and response bodies as msgspec Structs: validation and the OpenAPI document in one place."""
