"""The external and custom metrics API server (``prescale adapter``)."""
