"""The SDK's version, announced in the `x-restate-server` header."""

SDK_VERSION = "0.1.0"
SERVER_HEADER = f"perdure-sdk-python/{SDK_VERSION}"
