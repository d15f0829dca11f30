"""prescale: api."""
