// Command openloop is an open-loop HTTP load generator: requests leave on a fixed schedule,
// whatever the answers.
//
//	openloop -url URL -body BODY -rate 2000 -duration 5s
//
// wrk waits for each answer before its connection sends again, so a slow server slows the
// offer down and overload never builds up. Here request i is due at start + i/rate; it goes
// out on an idle keep-alive connection, or a new one, or (past -max-conns) as soon as one
// frees up. Latency runs from the due time, so a late send or a wait for a connection
// counts. Prints one JSON object: the offered count, the wall time and, per HTTP status, the
// sorted latencies in milliseconds (status 0: transport errors, -1: not answered within
// -drain after the last send).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

type result struct {
	status  int
	due     time.Duration // since the start
	latency time.Duration
}

type config struct {
	url      string
	body     []byte
	rate     float64
	duration time.Duration
	drain    time.Duration
	maxConns int
	warm     int
}

func parse(args []string) (config, error) {
	fs := flag.NewFlagSet("openloop", flag.ContinueOnError)
	url := fs.String("url", "", "POST target (required)")
	body := fs.String("body", "", "JSON request body (required)")
	rate := fs.Float64("rate", 0, "requests per second (required, > 0)")
	duration := fs.Duration("duration", 5*time.Second, "how long to offer load")
	drain := fs.Duration("drain", 12*time.Second, "after the last send, wait this long for answers")
	maxConns := fs.Int("max-conns", 2000, "most connections open at once")
	warm := fs.Int("warm-conns", 0, "open this many keep-alive connections before the first send")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	switch {
	case *url == "" || *body == "":
		return config{}, fmt.Errorf("-url and -body are required")
	case *rate <= 0:
		return config{}, fmt.Errorf("-rate must be > 0, got %g", *rate)
	case *duration <= 0 || *drain < 0:
		return config{}, fmt.Errorf("-duration must be > 0 and -drain >= 0")
	case *maxConns < 1:
		return config{}, fmt.Errorf("-max-conns must be >= 1, got %d", *maxConns)
	case *warm < 0 || *warm > *maxConns:
		return config{}, fmt.Errorf("-warm-conns must be in [0, -max-conns], got %d", *warm)
	}
	return config{*url, []byte(*body), *rate, *duration, *drain, *maxConns, *warm}, nil
}

func client(cfg config) *http.Client {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxConnsPerHost:     cfg.maxConns,
		MaxIdleConnsPerHost: cfg.maxConns,
		DisableCompression:  true,
	}
	return &http.Client{Transport: transport}
}

func send(ctx context.Context, c *http.Client, cfg config, due time.Time) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.url, bytes.NewReader(cfg.body))
	if err != nil {
		return result{status: 0, latency: time.Since(due)}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return result{status: -1, latency: time.Since(due)}
		}
		return result{status: 0, latency: time.Since(due)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return result{status: 0, latency: time.Since(due)}
	}
	return result{status: resp.StatusCode, latency: time.Since(due)}
}

// warmUp opens cfg.warm connections at once (a HEAD each, answered without a model call)
// and leaves them idle in the pool, as a proxy in front of the server keeps its own.
func warmUp(c *http.Client, cfg config) {
	var wg sync.WaitGroup
	for i := 0; i < cfg.warm; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := c.Head(cfg.url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
}

// run offers the load and returns every request's result.
func run(cfg config) ([]result, int, time.Duration) {
	c := client(cfg)
	warmUp(c, cfg)
	total := int(cfg.rate * cfg.duration.Seconds())
	results := make([]result, total)
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(cfg.duration+cfg.drain))
	defer cancel()
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.rate)
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			results[i] = send(ctx, c, cfg, due)
			results[i].due = due.Sub(start)
		}(i, due)
	}
	wg.Wait()
	return results, total, time.Since(start)
}

func report(w io.Writer, results []result, offered int, wall time.Duration) error {
	type bucket struct{ sec, status int }
	byStatus := map[string][]float64{}
	bySecond := map[bucket][]float64{}
	for _, r := range results {
		ms := float64(r.latency.Microseconds()) / 1000
		byStatus[strconv.Itoa(r.status)] = append(byStatus[strconv.Itoa(r.status)], ms)
		b := bucket{int(r.due.Seconds()), r.status}
		bySecond[b] = append(bySecond[b], ms)
	}
	for _, v := range byStatus {
		sort.Float64s(v)
	}
	perSecond := map[string]map[string]float64{} // p99 per second of schedule, per status
	for b, v := range bySecond {
		sort.Float64s(v)
		sec := strconv.Itoa(b.sec)
		if perSecond[sec] == nil {
			perSecond[sec] = map[string]float64{}
		}
		perSecond[sec][strconv.Itoa(b.status)] = v[len(v)*99/100]
	}
	return json.NewEncoder(w).Encode(map[string]any{
		"offered": offered, "wall_s": wall.Seconds(), "latencies_ms": byStatus, "p99_ms_by_second": perSecond,
	})
}

func main() {
	cfg, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(2)
	}
	results, offered, wall := run(cfg)
	if err := report(os.Stdout, results, offered, wall); err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(1)
	}
}
