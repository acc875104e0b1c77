"""Message framing of the Restate service protocol: an 8-byte big-endian header
(type u16, flags u16, length u32) followed by the protobuf body. Sans-IO."""

from __future__ import annotations

import struct

from perdure.protocol.errors import ProtocolError
from perdure.record import record

HEADER = struct.Struct(">HHI")
HEADER_SIZE = HEADER.size
MESSAGE_SIZE_MAX_DEFAULT = 32 * 1024 * 1024
FLAG_REQUESTED_ACK = 0x8000


@record
class Frame:
    """One framed message, body still encoded."""

    type: int
    flags: int
    body: bytes

    def encode(self) -> bytes:
        return HEADER.pack(self.type, self.flags, len(self.body)) + self.body


def encode_frame(msg_type: int, body: bytes, flags: int = 0) -> bytes:
    return HEADER.pack(msg_type, flags, len(body)) + body


class FrameDecoder:
    """Turns a byte stream into frames. Messages may straddle chunks and one
    chunk may hold several messages, so input is buffered by length."""

    __slots__ = ("_buf", "_size_max")

    def __init__(self, message_size_max: int = MESSAGE_SIZE_MAX_DEFAULT) -> None:
        self._buf = bytearray()
        self._size_max = message_size_max

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete, in order."""
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            msg_type, flags, length = HEADER.unpack_from(buf, pos)
            if length > self._size_max:
                raise ProtocolError(
                    f"message of type 0x{msg_type:04x} is {length} bytes, over the limit of {self._size_max}"
                )
            if end - pos - HEADER_SIZE < length:
                break
            start = pos + HEADER_SIZE
            frames.append(Frame(msg_type, flags, bytes(buf[start : start + length])))
            pos = start + length
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buf)
