package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"
)

var errHelp = errors.New("help requested")

type config struct {
	listen      string
	backend     *url.URL
	concurrency int
	queue       int
	maxWait     time.Duration
	drainDelay  time.Duration
	gracePeriod time.Duration
	namespace   string
	pod         string
}

func parse(args []string) (config, error) {
	fs := flag.NewFlagSet("queueproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", ":8012", "address for inference traffic")
	backend := fs.String("backend", "http://127.0.0.1:8080", "the model server (http://host:port)")
	concurrency := fs.Int("concurrency", 64, "most inference requests at the server at once (>= 1)")
	queue := fs.Int("queue", 64, "most inference requests waiting for a slot (>= 0); more get 429")
	maxWait := fs.Duration("max-wait", 50*time.Millisecond, "longest wait for a slot before 429 (> 0)")
	drainDelay := fs.Duration("drain-delay", 2*time.Second, "keep serving this long after SIGTERM")
	gracePeriod := fs.Duration("grace-period", 30*time.Second, "SIGTERM to exit, at most")
	namespace := fs.String("namespace", os.Getenv("POD_NAMESPACE"), "namespace label (default $POD_NAMESPACE)")
	pod := fs.String("pod", os.Getenv("POD_NAME"), "pod label (default $POD_NAME)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fmt.Println("queueproxy: shed load with 429 before it reaches the model server")
			fs.PrintDefaults()
			return config{}, errHelp
		}
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q; every setting is a flag (see -help)", fs.Arg(0))
	}
	u, err := url.Parse(*backend)
	switch {
	case err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/"):
		return config{}, fmt.Errorf("-backend: %q is not allowed; expected http://host:port", *backend)
	case *concurrency < 1:
		return config{}, fmt.Errorf("-concurrency: %d is not allowed; expected an integer >= 1", *concurrency)
	case *queue < 0:
		return config{}, fmt.Errorf("-queue: %d is not allowed; expected an integer >= 0", *queue)
	case *maxWait <= 0:
		return config{}, fmt.Errorf("-max-wait: %s is not allowed; expected a duration > 0", *maxWait)
	case *drainDelay < 0:
		return config{}, fmt.Errorf("-drain-delay: %s is not allowed; expected a duration >= 0", *drainDelay)
	case *gracePeriod <= *drainDelay:
		return config{}, fmt.Errorf("-grace-period: %s is not allowed; it must be longer than -drain-delay (%s)",
			*gracePeriod, *drainDelay)
	}
	return config{
		listen: *listen, backend: u, concurrency: *concurrency,
		queue: *queue, maxWait: *maxWait, drainDelay: *drainDelay, gracePeriod: *gracePeriod,
		namespace: *namespace, pod: *pod,
	}, nil
}
