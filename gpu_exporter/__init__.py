"""GPU and inference-traffic metrics per node, attributed to pods (``prescale exporter``)."""
