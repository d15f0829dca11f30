"""The local stack: the real parts prescale talks to, started as plain processes.

Prometheus and Alertmanager from the Debian packages, and a Kubernetes control plane (etcd,
kube-apiserver with the aggregation layer, kube-controller-manager, kube-scheduler, KWOK)
built from the Go modules by ``scripts/build-k8s.sh``. Used by the test fixtures, by
``prescale stack`` and by the demo.
"""
