// Command queueproxy sheds load in front of `prescale serve`, in the pod, before Python sees it.
//
//	queueproxy -listen :8012 -backend http://127.0.0.1:8080 -concurrency 64 -queue 64 -max-wait 50ms
//
// The model server refuses with 429 when its own queue is full, but a refusal in a Python
// event loop still costs a share of an answer: on one CPU at twice its capacity, refusing
// alone fills the loop and the refused requests wait in socket buffers where no limit sees
// them. This proxy (the role Knative's queue-proxy plays for KServe) keeps at most
// -concurrency inference requests at the server and at most -queue waiting for a slot; a
// request that finds the queue full, or waits -max-wait without getting a slot, gets 429 with
// Retry-After and a JSON error at once. Probes, metadata and metrics pass through unlimited.
//
// GET /metrics answers the server's own metrics with the proxy's appended:
// inference_proxy_refused_total{namespace,pod,model} (the exporter's prescale preset folds it
// into inference_requests_total{code="429"}, so demand still counts what was refused),
// inference_proxy_inflight, inference_proxy_queued, inference_proxy_concurrency_limit and
// inference_proxy_backend_up. Logs are JSON lines on stderr.
//
// On SIGTERM it keeps serving for -drain-delay (balancers notice the pod is unready), then
// stops accepting, lets in-flight and queued requests finish within the rest of
// -grace-period, and exits 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, err := parse(os.Args[1:])
	if errors.Is(err, errHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "queueproxy: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(cfg, log); err != nil {
		log.Error("exiting", "error", err.Error())
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	p := newProxy(cfg)
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", cfg.listen, err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "port", ln.Addr().(*net.TCPAddr).Port,
		"backend", cfg.backend.String(), "concurrency", cfg.concurrency, "queue", cfg.queue,
		"max_wait_ms", cfg.maxWait.Milliseconds())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errs:
		return err
	case <-sigs:
	}
	start := time.Now()
	log.Info("draining", "drain_delay_s", cfg.drainDelay.Seconds())
	time.Sleep(cfg.drainDelay) // the balancers' notice period, still serving
	ctx, cancel := context.WithTimeout(context.Background(), cfg.gracePeriod-cfg.drainDelay)
	defer cancel()
	err = srv.Shutdown(ctx) // stops accepting, waits for in-flight and queued requests
	if err != nil {
		return fmt.Errorf("requests still in flight when the grace period ended: %w", err)
	}
	log.Info("drained, exiting", "drain_s", time.Since(start).Seconds())
	return nil
}
