package testbed

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// managedBy marks EndpointSlices written by the test bed, so that no
// controller (none runs anyway) would claim them.
const managedBy = "testbed.promshard.io"

// ServiceSpec describes a selector-less headless Service backed by targets.
type ServiceSpec struct {
	Namespace, Name string
	// Labels go on the Service (what ServiceMonitors select) and on the
	// EndpointSlice/Endpoints objects.
	Labels map[string]string
	// PortName names the port in the Service, EndpointSlice and Endpoints.
	// Default "metrics".
	PortName string
	// Targets back the Service; they must share one port. Empty is allowed.
	Targets []*Target
	// Pods, when set, creates a Running pod <name>-<i> (labels app=<name>,
	// pod IP = target i's IP) for each target and points the endpoints at
	// it with a targetRef, as a Deployment behind the Service would, so that
	// discovery yields the pod and container meta labels.
	Pods bool
}

// podName is the pod standing for target i of a Service with Pods set.
func (s ServiceSpec) podName(i int) string { return fmt.Sprintf("%s-%d", s.Name, i) }

func (s ServiceSpec) targetRef(i int) *corev1.ObjectReference {
	if !s.Pods {
		return nil
	}
	return &corev1.ObjectReference{Kind: "Pod", Namespace: s.Namespace, Name: s.podName(i)}
}

// ApplyService creates or updates a Service, its EndpointSlice (labelled
// kubernetes.io/service-name) and a core/v1 Endpoints object with the same
// addresses (the Endpoints role is prometheus-operator's default for
// PrometheusAgents; no endpoints controller runs, so the bed writes it).
// Calling it again with other targets replaces the addresses.
func (b *Bed) ApplyService(ctx context.Context, s ServiceSpec) error {
	if s.PortName == "" {
		s.PortName = "metrics"
	}
	port := int32(0)
	for _, t := range s.Targets {
		if port != 0 && int32(t.Port) != port {
			return fmt.Errorf("service %s/%s: targets on different ports (%d, %d)", s.Namespace, s.Name, port, t.Port)
		}
		port = int32(t.Port)
	}
	if port == 0 {
		port = 8080
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: s.PortName, Port: port, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(port)}},
		},
	}
	if err := b.applyService(ctx, svc); err != nil {
		return err
	}
	if s.Pods {
		for i, t := range s.Targets {
			_, err := b.CreatePod(ctx, PodSpec{Namespace: s.Namespace, Name: s.podName(i), Labels: map[string]string{"app": s.Name}, PortName: s.PortName, Target: t})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
	}
	if err := b.applyEndpointSlice(ctx, s, port); err != nil {
		return err
	}
	return b.applyEndpoints(ctx, s, port)
}

func (b *Bed) applyService(ctx context.Context, svc *corev1.Service) error {
	c := b.Kube.CoreV1().Services(svc.Namespace)
	cur, err := c.Get(ctx, svc.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(ctx, svc, metav1.CreateOptions{})
	case err == nil:
		cur.Labels, cur.Spec.Ports = svc.Labels, svc.Spec.Ports
		_, err = c.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func (b *Bed) applyEndpointSlice(ctx context.Context, s ServiceSpec, port int32) error {
	labels := map[string]string{discoveryv1.LabelServiceName: s.Name, discoveryv1.LabelManagedBy: managedBy}
	for k, v := range s.Labels {
		labels[k] = v
	}
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: labels},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(s.PortName), Port: ptr.To(port),
			Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for i, t := range s.Targets {
		ep := discoveryv1.Endpoint{Addresses: []string{t.IP.String()}, TargetRef: s.targetRef(i),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}}
		if t.NodeName != "" {
			ep.NodeName = ptr.To(t.NodeName)
		}
		if t.Options.Zone != "" {
			ep.Zone = ptr.To(t.Options.Zone)
		}
		eps.Endpoints = append(eps.Endpoints, ep)
	}
	c := b.Kube.DiscoveryV1().EndpointSlices(s.Namespace)
	cur, err := c.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(ctx, eps, metav1.CreateOptions{})
	case err == nil:
		eps.ResourceVersion = cur.ResourceVersion
		_, err = c.Update(ctx, eps, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply endpointslice %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

func (b *Bed) applyEndpoints(ctx context.Context, s ServiceSpec, port int32) error {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels}} //nolint:staticcheck // Endpoints is what the Endpoints SD role watches.
	if len(s.Targets) > 0 {
		sub := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: s.PortName, Port: port, Protocol: corev1.ProtocolTCP}}} //nolint:staticcheck
		for i, t := range s.Targets {
			a := corev1.EndpointAddress{IP: t.IP.String(), TargetRef: s.targetRef(i)}
			if t.NodeName != "" {
				a.NodeName = ptr.To(t.NodeName)
			}
			sub.Addresses = append(sub.Addresses, a)
		}
		ep.Subsets = []corev1.EndpointSubset{sub} //nolint:staticcheck
	}
	c := b.Kube.CoreV1().Endpoints(s.Namespace) //nolint:staticcheck
	cur, err := c.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.Create(ctx, ep, metav1.CreateOptions{})
	case err == nil:
		ep.ResourceVersion = cur.ResourceVersion
		_, err = c.Update(ctx, ep, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("apply endpoints %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// DeleteService deletes the Service, its EndpointSlice and Endpoints (no
// garbage collector runs, so each is deleted explicitly).
func (b *Bed) DeleteService(ctx context.Context, namespace, name string) error {
	errs := []error{
		b.Kube.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{}),
		b.Kube.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, name, metav1.DeleteOptions{}),
		b.Kube.CoreV1().Endpoints(namespace).Delete(ctx, name, metav1.DeleteOptions{}), //nolint:staticcheck
	}
	for _, err := range errs {
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete service %s/%s: %w", namespace, name, err)
		}
	}
	return nil
}

// PodSpec describes a pod standing for a target (PodMonitor case).
type PodSpec struct {
	Namespace, Name string
	Labels          map[string]string
	// PortName names the container port. Default "metrics".
	PortName string
	// Target supplies the pod IP (use a loopback Host) and port, and
	// spec.nodeName from its NodeName.
	Target *Target
	// Phase is the status phase. Default Running (with Ready conditions).
	Phase corev1.PodPhase
}

// CreatePod creates a pod and sets its status through the status
// subresource: the phase, podIP/podIPs = the target's IP, and Ready.
func (b *Bed) CreatePod(ctx context.Context, s PodSpec) (*corev1.Pod, error) {
	if s.PortName == "" {
		s.PortName = "metrics"
	}
	if s.Phase == "" {
		s.Phase = corev1.PodRunning
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels},
		Spec: corev1.PodSpec{
			NodeName: s.Target.NodeName,
			Containers: []corev1.Container{{Name: "target", Image: "testbed.invalid/target",
				Ports: []corev1.ContainerPort{{Name: s.PortName, ContainerPort: int32(s.Target.Port), Protocol: corev1.ProtocolTCP}}}},
		},
	}
	c := b.Kube.CoreV1().Pods(s.Namespace)
	created, err := c.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", s.Namespace, s.Name, err)
	}
	ready := corev1.ConditionFalse
	if s.Phase == corev1.PodRunning {
		ready = corev1.ConditionTrue
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase:  s.Phase,
		PodIP:  s.Target.IP.String(),
		PodIPs: []corev1.PodIP{{IP: s.Target.IP.String()}},
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: ready, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "target", Image: "testbed.invalid/target",
			Ready: ready == corev1.ConditionTrue, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	updated, err := c.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("set status of pod %s/%s: %w", s.Namespace, s.Name, err)
	}
	return updated, nil
}

// DeletePod deletes a pod at once (grace period 0: no kubelet would confirm
// a graceful deletion).
func (b *Bed) DeletePod(ctx context.Context, namespace, name string) error {
	err := b.Kube.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// CreateNode creates a Node object with labels, for node metadata
// (attachMetadata.node, the node role). No kubelet runs: the Node only
// exists in the API.
func (b *Bed) CreateNode(ctx context.Context, name string, labels map[string]string) error {
	_, err := b.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}
