"""Notifications: notifiers (where a message goes) and the outbox (what is owed)."""
