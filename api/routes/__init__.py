"""One router per concern; the app factory (api.main) includes them."""
