"""Steering agents: requests, decisions, tool control, audit."""
