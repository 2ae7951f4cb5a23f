"""One router per concern: predictions, and the service's own endpoints."""
