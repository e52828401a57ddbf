package config

import (
	"reflect"
	"strings"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
)

// What promshard does with each field of a PrometheusAgent spec, by its
// JSON name. Every field is in exactly one of the three sets;
// agentfields_test.go lists the fields of the prometheus-operator release
// promshard is built with and fails when a new release adds one, so that
// it is classified on purpose.
var (
	// implementedAgentFields shape the generated configuration as
	// prometheus-operator would (global.go, selection.go, remotewrite.go,
	// additional.go).
	implementedAgentFields = fieldSet(
		"serviceMonitorSelector", "serviceMonitorNamespaceSelector", "podMonitorSelector", "podMonitorNamespaceSelector",
		"probeSelector", "probeNamespaceSelector", "scrapeConfigSelector", "scrapeConfigNamespaceSelector",
		"prometheusExternalLabelName", "scrapeInterval", "scrapeTimeout", "scrapeProtocols", "externalLabels",
		"remoteWrite", "additionalScrapeConfigs", "arbitraryFSAccessThroughSMs",
		"overrideHonorLabels", "overrideHonorTimestamps", "ignoreNamespaceSelectors",
		"enforcedNamespaceLabel", "excludedFromEnforcement", "enforcedSampleLimit", "enforcedTargetLimit",
		"enforcedLabelLimit", "enforcedLabelNameLengthLimit", "enforcedLabelValueLengthLimit",
		"enforcedKeepDroppedTargets", "enforcedBodySizeLimit",
		"nameValidationScheme", "nameEscapingScheme", "convertClassicHistogramsToNHCB",
		"scrapeNativeHistograms", "scrapeClassicHistograms", "extraScrapeMetrics",
		"podTargetLabels", "bodySizeLimit", "sampleLimit", "targetLimit", "labelLimit",
		"labelNameLengthLimit", "labelValueLengthLimit", "keepDroppedTargets",
		"scrapeClasses", "serviceDiscoveryRole",
	)
	// workloadAgentFields describe the pods prometheus-operator would
	// create. promshard creates no pods: it runs as the StatefulSet or
	// DaemonSet you deploy, whose own fields and flags (--log.level, the
	// replica count, the volume of --storage.path, ...) say these things.
	workloadAgentFields = fieldSet(
		"mode", "podMetadata", "version", "image", "imagePullPolicy", "imagePullSecrets", "replicas", "shards",
		"shardingStrategy", "logLevel", "logFormat", "externalUrl", "routePrefix", "storage", "volumes",
		"volumeMounts", "persistentVolumeClaimRetentionPolicy", "web", "resources", "nodeSelector",
		"schedulerName", "serviceAccountName", "automountServiceAccountToken", "secrets", "configMaps",
		"affinity", "tolerations", "topologySpreadConstraints", "securityContext", "dnsPolicy", "dnsConfig",
		"listenLocal", "podManagementPolicy", "updateStrategy", "enableServiceLinks", "containers",
		"initContainers", "priorityClassName", "portName", "minReadySeconds", "hostAliases", "additionalArgs",
		"hostNetwork", "reloadStrategy", "maximumStartupDurationSeconds", "serviceName", "runtime",
		"terminationGracePeriodSeconds", "hostUsers",
	)
	// unimplementedAgentFields change what a Prometheus agent does in ways
	// promshard does not (yet) offer. replicaExternalLabelName is
	// honoured only as "" (no replica label, which promshard never adds:
	// each target has one writer).
	unimplementedAgentFields = fieldSet(
		"paused", "replicaExternalLabelName", "enableRemoteWriteReceiver", "enableOTLPReceiver",
		"remoteWriteReceiverMessageVersions", "enableFeatures", "otlp", "apiserverConfig", "walCompression",
		"tracingConfig", "tsdb", "scrapeFailureLogFile",
	)
)

// agentFieldDefaults are the defaults the PrometheusAgent CRD's schema
// gives fields that are not implemented: the API server sets them on
// every object, so they are not the user's choice and not reported.
// agentfields_test.go checks them against deploy/crds.
var agentFieldDefaults = map[string]any{"portName": "web", "shards": int32(1)}

// isDefault reports whether v, the value of field name, is its CRD default.
func isDefault(name string, v reflect.Value) bool {
	d, ok := agentFieldDefaults[name]
	if !ok {
		return false
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	return reflect.DeepEqual(v.Interface(), d)
}

func fieldSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// IgnoredAgentFields are the fields a PrometheusAgent sets that promshard
// does not apply, by their JSON names in the spec's order: Workload are
// pod and workload settings (promshard runs as the pods you deploy),
// Unimplemented the features promshard does not offer.
type IgnoredAgentFields struct {
	Workload, Unimplemented []string
}

// Empty reports whether no field is ignored.
func (f IgnoredAgentFields) Empty() bool { return len(f.Workload) == 0 && len(f.Unimplemented) == 0 }

// String says which fields are ignored and why, in one line, or "".
func (f IgnoredAgentFields) String() string {
	var parts []string
	if len(f.Unimplemented) > 0 {
		parts = append(parts, "not implemented by promshard: "+strings.Join(f.Unimplemented, ", "))
	}
	if len(f.Workload) > 0 {
		parts = append(parts, "pod settings, which promshard takes from its own StatefulSet or DaemonSet and flags: "+strings.Join(f.Workload, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return "PrometheusAgent fields ignored (" + strings.Join(parts, "; ") + ")"
}

// IgnoredFields returns the fields of spec that are set (neither their
// zero value nor the CRD's default) and that promshard does not apply. A field of no known class
// (a newer prometheus-operator's) counts as not implemented.
func IgnoredFields(spec *monitoringv1alpha1.PrometheusAgentSpec) IgnoredAgentFields {
	var out IgnoredAgentFields
	if spec == nil {
		return out
	}
	eachAgentField(func(name string, v reflect.Value) {
		if implementedAgentFields[name] || v.IsZero() || isDefault(name, v) {
			return
		}
		if name == "replicaExternalLabelName" && v.Elem().String() == "" {
			return // what promshard does anyway
		}
		if workloadAgentFields[name] {
			out.Workload = append(out.Workload, name)
		} else {
			out.Unimplemented = append(out.Unimplemented, name)
		}
	}, reflect.ValueOf(spec).Elem())
	return out
}

// eachAgentField calls fn with the JSON name and value of every field of
// v, a PrometheusAgentSpec, descending into inline structs.
func eachAgentField(fn func(name string, v reflect.Value), v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" && f.Anonymous {
			eachAgentField(fn, v.Field(i))
			continue
		}
		fn(name, v.Field(i))
	}
}
