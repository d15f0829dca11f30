"""prescale: models."""
