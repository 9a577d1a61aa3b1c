"""Triggers: timers, file drops and webhooks; each only turns a firing into an event."""
