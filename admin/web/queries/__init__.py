"""SQL of the web admin, one module per area; every query takes the user's scope."""
