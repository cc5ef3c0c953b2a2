"""Aster Studio agent SDK: report an agent's events to a Studio without ever hurting the agent."""
