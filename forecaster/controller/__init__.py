"""prescale: controller."""
