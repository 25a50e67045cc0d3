"""FIX 4.4: message codec (files and live sessions) and the drop-copy log decoder."""
from .codec import FixError, encode_message, parse_message
from .decoder import FixFileDecoder

__all__ = ["FixError", "FixFileDecoder", "encode_message", "parse_message"]
