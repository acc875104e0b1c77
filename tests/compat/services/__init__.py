"""Services written with the official SDKs, used by the compatibility scenarios and the benchmark."""
