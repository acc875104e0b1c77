"""Sans-IO Restate service protocol: framing, message codecs, identifiers,
discovery manifest. Shared by the server's invoker and the SDK; imports
nothing else of Perdure."""
