"""The fi-campaign orchestrator."""

__version__ = "0.1.0"
