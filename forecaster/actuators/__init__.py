"""prescale: actuators."""
