"""The server's metrics, in the ``inference_*`` families of docs/design.md, on an explicit registry.

Every per-model family carries ``namespace`` and ``pod`` (from the downward API) and
``model``, so the gpu_exporter's traffic presets and the adapter read the bundled server with
no relabelling. ``inference_request_duration_seconds`` observes answered requests (2xx) only:
a fast 429 must not make the latency an autoscaler sees look better; rejections are counted
in ``inference_requests_total{code="429"}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ModelMetrics:
    """The children of the per-model families for one model, handed to its batchers."""

    queue_depth: Gauge
    batch_size: Histogram
    queue_wait: Histogram
    model_seconds: Histogram
    inflight: Gauge


class ServerMetrics:
    """All families, registered on ``registry`` (never the global default one)."""

    def __init__(self, registry: CollectorRegistry, namespace: str, pod: str) -> None:
        self.registry = registry
        self._where = {"namespace": namespace, "pod": pod}
        # Labelled children, looked up once: ``labels()`` costs more than the request it counts
        # when a 429 is all the server does for it. Keys are served models and status codes.
        self._models: dict[str, ModelMetrics] = {}
        self._done: dict[tuple[str, int], tuple[Counter, Histogram | None]] = {}
        per_model = ["namespace", "pod", "model"]
        self.requests = Counter("inference_requests", "Inference requests answered, by HTTP status code.",
                                [*per_model, "code"], registry=registry)
        self.duration = Histogram("inference_request_duration_seconds",
                                  "Time from arrival to answer of successful inference requests.",
                                  per_model, buckets=LATENCY_BUCKETS_S, registry=registry)
        self.queue_depth = Gauge("inference_queue_depth", "Requests waiting for a batch worker.",
                                 per_model, registry=registry)
        self.inflight = Gauge("inference_inflight_requests", "Inference requests accepted, not yet answered.",
                              per_model, registry=registry)
        self.batch_size = Histogram("inference_batch_size", "Rows per model call.", per_model,
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.queue_wait = Histogram("inference_queue_wait_seconds",
                                    "Time a request waited in the queue before its batch ran.",
                                    per_model, buckets=LATENCY_BUCKETS_S, registry=registry)
        self.model_seconds = Histogram("inference_model_seconds",
                                       "Time of one model call (one batch), without queueing or HTTP.",
                                       per_model, buckets=LATENCY_BUCKETS_S, registry=registry)
        self.load_seconds = Gauge("inference_model_load_seconds",
                                  "Time to load and warm up one model version.",
                                  [*per_model, "version", "runtime"], registry=registry)
        self.versions_loaded = Gauge("inference_model_versions_loaded", "Model versions currently serving.",
                                     per_model, registry=registry)
        self.load_failures = Counter("inference_model_load_failures", "Model versions that failed to load.",
                                     per_model, registry=registry)
        self.startup_seconds = Gauge("inference_startup_seconds",
                                     "Time from process start to first readiness (the pod's lead time).",
                                     ["namespace", "pod"], registry=registry)
        self.loop_lag_family = Gauge("inference_event_loop_lag_seconds",
                              "How late the server's event loop runs a timer (admission control's input).",
                              ["namespace", "pod"], registry=registry)
        self.ready = Gauge("inference_ready", "1 while the server is ready for traffic.",
                           ["namespace", "pod"], registry=registry)

    def for_model(self, model: str) -> ModelMetrics:
        found = self._models.get(model)
        if found is None:
            labels = {**self._where, "model": model}
            found = self._models[model] = ModelMetrics(
                queue_depth=self.queue_depth.labels(**labels),
                batch_size=self.batch_size.labels(**labels),
                queue_wait=self.queue_wait.labels(**labels),
                model_seconds=self.model_seconds.labels(**labels),
                inflight=self.inflight.labels(**labels),
            )
        return found

    def request_done(self, model: str, code: int, duration_s: float) -> None:
        children = self._done.get((model, code))
        if children is None:
            children = self._done[(model, code)] = (
                self.requests.labels(**self._where, model=model, code=str(code)),
                self.duration.labels(**self._where, model=model) if 200 <= code < 300 else None)
        children[0].inc()
        if children[1] is not None:
            children[1].observe(duration_s)

    def model_loaded(self, model: str, version: int, runtime: str, seconds: float, loaded_now: int) -> None:
        labels = {**self._where, "model": model, "version": str(version), "runtime": runtime}
        self.load_seconds.labels(**labels).set(seconds)
        self.versions_loaded.labels(**self._where, model=model).set(loaded_now)

    def model_unloaded(self, model: str, version: int, runtime: str, loaded_now: int) -> None:
        self.load_seconds.remove(*self._where.values(), model, str(version), runtime)
        self.versions_loaded.labels(**self._where, model=model).set(loaded_now)

    def load_failed(self, model: str) -> None:
        self.load_failures.labels(**self._where, model=model).inc()

    def loop_lag(self) -> Gauge:
        return self.loop_lag_family.labels(**self._where)

    def set_ready(self, ready: bool) -> None:
        self.ready.labels(**self._where).set(1 if ready else 0)

    def set_startup(self, seconds: float) -> None:
        self.startup_seconds.labels(**self._where).set(seconds)
