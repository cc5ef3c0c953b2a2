"""Live fan-out of committed events to console subscribers."""
