package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// inferPath matches the KServe v1 predict and Open Inference Protocol v2 infer paths.
var inferPath = regexp.MustCompile(`^/v(?:1/models/([^/:]+):predict|2/models/([^/]+)(?:/versions/[^/]+)?/infer)$`)

const maxModels = 64 // model label values kept; more names share model=""

type proxy struct {
	cfg       config
	rp        *httputil.ReverseProxy
	transport *http.Transport
	slots     chan struct{}
	waiting   chan struct{}

	inflight atomic.Int64
	queued   atomic.Int64

	where string // the namespace and pod labels of every family, escaped once

	mu      sync.Mutex
	known   map[string]bool  // model names the server has answered with something but 404
	refused map[string]int64 // by model label
}

func newProxy(cfg config) *proxy {
	p := &proxy{
		cfg: cfg, slots: make(chan struct{}, cfg.concurrency), waiting: make(chan struct{}, cfg.queue),
		known: map[string]bool{}, refused: map[string]int64{},
		where: fmt.Sprintf(`namespace="%s",pod="%s"`, labelValue.Replace(cfg.namespace), labelValue.Replace(cfg.pod)),
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = cfg.concurrency + 8 // every slot keeps its connection warm
	transport.DisableCompression = true
	p.transport = transport
	p.rp = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(cfg.backend); r.Out.Host = r.In.Host },
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			jsonError(w, http.StatusBadGateway, "model server unreachable: "+err.Error())
		},
		ModifyResponse: p.learn,
	}
	return p
}

func jsonError(w http.ResponseWriter, status int, message string) {
	body, _ := json.Marshal(map[string]string{"error": message})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// modelOf is the model named by an inference path, or "" when the path is not one.
func modelOf(path string) (string, bool) {
	m := inferPath.FindStringSubmatch(path)
	if m == nil {
		return "", false
	}
	return m[1] + m[2], true
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" && r.Method == http.MethodGet {
		p.metrics(w, r)
		return
	}
	model, infer := modelOf(r.URL.Path)
	if !infer || r.Method != http.MethodPost {
		p.rp.ServeHTTP(w, r) // probes and metadata are never limited
		return
	}
	if !p.admit() {
		p.refuse(w, model)
		return
	}
	p.inflight.Add(1)
	defer func() {
		p.inflight.Add(-1)
		<-p.slots
	}()
	p.rp.ServeHTTP(w, r)
}

// admit takes a slot at once, or waits up to max-wait in the bounded queue for one.
func (p *proxy) admit() bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case p.waiting <- struct{}{}:
	default:
		return false // the queue is full: refuse without waiting
	}
	p.queued.Add(1)
	defer func() {
		p.queued.Add(-1)
		<-p.waiting
	}()
	t := time.NewTimer(p.cfg.maxWait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (p *proxy) refuse(w http.ResponseWriter, model string) {
	label := ""
	p.mu.Lock()
	if p.known[model] {
		label = model
	}
	p.refused[label]++
	p.mu.Unlock()
	w.Header().Set("Retry-After", "1")
	jsonError(w, http.StatusTooManyRequests, fmt.Sprintf(
		"overloaded: %d requests at the model server and %d waiting (limits %d and %d, wait at most %s); retry later",
		p.inflight.Load(), p.queued.Load(), p.cfg.concurrency, p.cfg.queue, p.cfg.maxWait))
}

// learn records model names the server answered (not 404), so only real models become labels.
func (p *proxy) learn(resp *http.Response) error {
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if model, ok := modelOf(resp.Request.URL.Path); ok {
		p.mu.Lock()
		if !p.known[model] && len(p.known) < maxModels {
			p.known[model] = true
		}
		p.mu.Unlock()
	}
	return nil
}

// labelValue escapes a Prometheus label value.
var labelValue = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// metrics answers the server's own exposition with the proxy's families appended, so one
// scrape of the pod's serving port sees both (the exporter's prescale preset folds
// inference_proxy_refused_total into inference_requests_total{code="429"}).
func (p *proxy) metrics(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	up := 0
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.backend.JoinPath("/metrics").String(), nil)
	if resp, err := p.transport.RoundTrip(req); err == nil {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			up = 1
			b.Write(body)
			if len(body) > 0 && body[len(body)-1] != '\n' {
				b.WriteByte('\n')
			}
		}
	}
	b.WriteString("# HELP inference_proxy_refused_total Inference requests the queue proxy refused with 429 " +
		"before they reached the server.\n# TYPE inference_proxy_refused_total counter\n")
	p.mu.Lock()
	models := make([]string, 0, len(p.refused))
	for m := range p.refused {
		models = append(models, m)
	}
	sort.Strings(models)
	for _, m := range models {
		fmt.Fprintf(&b, "inference_proxy_refused_total{%s,model=\"%s\"} %d\n", p.where, labelValue.Replace(m), p.refused[m])
	}
	p.mu.Unlock()
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s{%s} %d\n", name, help, name, name, p.where, v)
	}
	gauge("inference_proxy_inflight", "Inference requests at the server through the proxy.", p.inflight.Load())
	gauge("inference_proxy_queued", "Inference requests waiting in the proxy for a slot.", p.queued.Load())
	gauge("inference_proxy_concurrency_limit", "Most inference requests at the server at once.",
		int64(p.cfg.concurrency))
	gauge("inference_proxy_backend_up", "1 when the server's own metrics were read for this scrape.", int64(up))
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}
