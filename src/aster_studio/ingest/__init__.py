"""Agent ingestion: decode, apply, write behind, ack."""

from aster_studio_sdk._native import compiled_path

__path__[:0] = compiled_path(__name__)  # its compiled modules first, when built (`make native`)
