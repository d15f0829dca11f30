"""prescale: providers."""
