package sharding

import "slices"

// DiscoveredLabelsRead returns the discovered labels the filter reads of a
// target besides its relabeling (its Kubernetes node and zone): a
// discovery that drops the labels no relabeling reads must keep these.
func DiscoveredLabelsRead() []string { return slices.Concat(nodeLabels, zoneLabels) }
