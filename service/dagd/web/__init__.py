"""The web server: REST API now, the UI on the same app later."""
