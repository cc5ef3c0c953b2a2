"""Agent ingestion: decode, apply, write behind, ack."""
