package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// agentSpecFields are the JSON names of every field of the PrometheusAgent
// spec of prometheus-operator v0.95 (PrometheusAgentSpec with its inline
// CommonPrometheusFields), in their order. An upgrade that adds, removes
// or renames one fails TestAgentSpecFieldsKnown: classify the field in
// agentfields.go (and implement it where it shapes the configuration).
var agentSpecFields = strings.Fields(`mode podMetadata serviceMonitorSelector serviceMonitorNamespaceSelector
podMonitorSelector podMonitorNamespaceSelector probeSelector probeNamespaceSelector scrapeConfigSelector
scrapeConfigNamespaceSelector version paused image imagePullPolicy imagePullSecrets replicas shards
shardingStrategy replicaExternalLabelName prometheusExternalLabelName logLevel logFormat scrapeInterval
scrapeTimeout scrapeProtocols externalLabels enableRemoteWriteReceiver enableOTLPReceiver
remoteWriteReceiverMessageVersions enableFeatures externalUrl routePrefix storage volumes volumeMounts
persistentVolumeClaimRetentionPolicy web resources nodeSelector schedulerName serviceAccountName
automountServiceAccountToken secrets configMaps affinity tolerations topologySpreadConstraints remoteWrite
otlp securityContext dnsPolicy dnsConfig listenLocal podManagementPolicy updateStrategy enableServiceLinks
containers initContainers additionalScrapeConfigs apiserverConfig priorityClassName portName
arbitraryFSAccessThroughSMs overrideHonorLabels overrideHonorTimestamps ignoreNamespaceSelectors
enforcedNamespaceLabel enforcedSampleLimit enforcedTargetLimit enforcedLabelLimit
enforcedLabelNameLengthLimit enforcedLabelValueLengthLimit enforcedKeepDroppedTargets enforcedBodySizeLimit
nameValidationScheme nameEscapingScheme convertClassicHistogramsToNHCB scrapeNativeHistograms
scrapeClassicHistograms extraScrapeMetrics minReadySeconds hostAliases additionalArgs walCompression
excludedFromEnforcement hostNetwork podTargetLabels tracingConfig bodySizeLimit sampleLimit targetLimit
labelLimit labelNameLengthLimit labelValueLengthLimit keepDroppedTargets reloadStrategy
maximumStartupDurationSeconds scrapeClasses serviceDiscoveryRole tsdb scrapeFailureLogFile serviceName
runtime terminationGracePeriodSeconds hostUsers`)

func specFieldNames() []string {
	var names []string
	eachAgentField(func(name string, _ reflect.Value) { names = append(names, name) }, reflect.ValueOf(monitoringv1alpha1.PrometheusAgentSpec{}))
	return names
}

// TestAgentSpecFieldsKnown: the spec has exactly the fields listed above,
// and each is in exactly one class.
func TestAgentSpecFieldsKnown(t *testing.T) {
	require.Equal(t, agentSpecFields, specFieldNames(), "the PrometheusAgent spec changed: classify its fields in agentfields.go")
	for _, name := range agentSpecFields {
		n := 0
		for _, set := range []map[string]bool{implementedAgentFields, workloadAgentFields, unimplementedAgentFields} {
			if set[name] {
				n++
			}
		}
		require.Equal(t, 1, n, "field %s must be in exactly one class", name)
	}
	require.Len(t, agentSpecFields, len(implementedAgentFields)+len(workloadAgentFields)+len(unimplementedAgentFields), "a class names a field the spec does not have")
}

// TestIgnoredFieldsEachField sets every field of the spec alone to a
// non-zero value: an implemented field is not reported, every other one
// is, in its class.
func TestIgnoredFieldsEachField(t *testing.T) {
	for i, name := range agentSpecFields {
		var spec monitoringv1alpha1.PrometheusAgentSpec
		j := 0
		eachAgentField(func(_ string, v reflect.Value) {
			if j == i {
				fill(v)
				require.False(t, v.IsZero(), "%s: fill left the zero value", name)
			}
			j++
		}, reflect.ValueOf(&spec).Elem())
		got := IgnoredFields(&spec)
		switch {
		case implementedAgentFields[name]:
			require.True(t, got.Empty(), "%s is implemented, yet reported: %s", name, got)
		case workloadAgentFields[name]:
			require.Equal(t, IgnoredAgentFields{Workload: []string{name}}, got)
			require.Contains(t, got.String(), "StatefulSet or DaemonSet and flags: "+name+")")
		default:
			require.Equal(t, IgnoredAgentFields{Unimplemented: []string{name}}, got)
			require.Contains(t, got.String(), "not implemented by promshard: "+name+")")
		}
	}
}

func TestIgnoredFields(t *testing.T) {
	var spec monitoringv1alpha1.PrometheusAgentSpec
	require.True(t, IgnoredFields(&spec).Empty())
	require.Empty(t, IgnoredFields(&spec).String())
	require.True(t, IgnoredFields(nil).Empty())

	spec.ReplicaExternalLabelName = ptrTo("")
	require.True(t, IgnoredFields(&spec).Empty(), `replicaExternalLabelName "" is what promshard does`)
	spec.ReplicaExternalLabelName = ptrTo("replica")
	spec.Replicas = ptrTo[int32](3)
	spec.Shards = ptrTo[int32](2)
	spec.WALCompression = ptrTo(true)
	spec.ScrapeInterval = "15s"
	got := IgnoredFields(&spec)
	require.Equal(t, IgnoredAgentFields{Workload: []string{"replicas", "shards"}, Unimplemented: []string{"replicaExternalLabelName", "walCompression"}}, got)
	require.Equal(t, "PrometheusAgent fields ignored (not implemented by promshard: replicaExternalLabelName, walCompression; "+
		"pod settings, which promshard takes from its own StatefulSet or DaemonSet and flags: replicas, shards)", got.String())
}

// fill sets v to a non-zero value of its type.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(2) // not 1, the CRD default of shards
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(2)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(f)
				if !f.IsZero() {
					return
				}
			}
		}
	}
}

// TestAgentFieldDefaults: the defaults not reported are exactly those the
// CRD in deploy/crds sets on fields promshard does not implement, so that
// no PrometheusAgent is reported for a value it did not choose.
func TestAgentFieldDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "crds", "monitoring.coreos.com_prometheusagents.yaml"))
	require.NoError(t, err)
	var crd apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.Unmarshal(b, &crd))
	got := map[string]string{}
	for _, v := range crd.Spec.Versions {
		for name, p := range v.Schema.OpenAPIV3Schema.Properties["spec"].Properties {
			if p.Default != nil && !implementedAgentFields[name] {
				got[name] = string(p.Default.Raw)
			}
		}
	}
	want := map[string]string{}
	for name, d := range agentFieldDefaults {
		raw, err := json.Marshal(d)
		require.NoError(t, err)
		want[name] = string(raw)
	}
	require.Equal(t, want, got)

	var spec monitoringv1alpha1.PrometheusAgentSpec
	spec.PortName, spec.Shards = "web", ptrTo[int32](1)
	require.True(t, IgnoredFields(&spec).Empty(), "CRD defaults are not reported: %s", IgnoredFields(&spec))
}
