"""Errors of the protocol layer."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the service protocol (bad frame, unknown message, wrong order)."""

    code = 571  # PROTOCOL_VIOLATION, as the SDKs report it


class JournalMismatch(ProtocolError):
    """A replayed command does not match what the journal recorded."""

    code = 570
