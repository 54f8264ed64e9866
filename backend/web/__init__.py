"""HTTP: the app factory and its blueprints (Label Studio's protocol, the operators' routes)."""
