"""Blueprints of the web admin, one per area."""
