// Package testbed runs a small, real Kubernetes control plane and the pieces
// around it for promshard's end-to-end tests and demo: etcd, kube-apiserver
// with the prometheus-operator CRDs installed, metrics targets in a network
// namespace (ServiceMonitor case) or on loopback (PodMonitor case), and a real
// Prometheus acting as remote-write receiver.
//
// Binaries are built once into <repo>/.cache/bin (or $PROMSHARD_CACHE/bin) and
// reused. Every process and network namespace a Bed creates is removed by
// Close, by a SIGINT/SIGTERM handler, and — after a crash — by the next Bed
// that starts on the same machine.
//
// The package is test infrastructure: it may shell out to `go`, `ip` and the
// cached binaries, and it must not be imported by promshard's production
// packages. It does not import any promshard package either, so the demo and
// every e2e test can reuse it.
package testbed
