"""Built-in example traces (data only; see README.md for sources and licenses)."""
