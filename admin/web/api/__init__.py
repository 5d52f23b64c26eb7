"""The JSON API under ``/api/v1`` for publishers' systems: token authentication only."""
