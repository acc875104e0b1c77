"""`restate.serde` compatibility: Serde-related classes, so `from perdure.serde import ...`
works wherever a service imports `from restate.serde import ...`."""

from perdure.sdk.serde import BytesSerde, DefaultSerde, JsonSerde, PydanticJsonSerde, Serde, is_pydantic

__all__ = ["BytesSerde", "DefaultSerde", "JsonSerde", "PydanticJsonSerde", "Serde", "is_pydantic"]
