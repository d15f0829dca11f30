"""The bundled model server (``prescale serve``)."""
