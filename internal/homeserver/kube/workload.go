package kube

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// workload is what the controller reads of a StatefulSet or Deployment.
type workload struct {
	api             kind
	name            string
	resourceVersion string
	// replicas is spec.replicas (1 when unset, as the API defaults it).
	replicas int32
	// ready is status.readyReplicas; it counts for the current spec only
	// once observed (status.observedGeneration) reaches generation.
	ready                int32
	generation, observed int64
	// annotation is ReplicasAnnotation's value, when hasAnnotation.
	annotation    string
	hasAnnotation bool
	selector      *metav1.LabelSelector
}

// key names w in outcomes and messages, as kubectl does:
// "statefulset/synapse-main".
func (w workload) key() string { return w.api.name + "/" + w.name }

// kind reaches one type of workload through the API.
type kind struct {
	name, plural string
	list         func(ctx context.Context, opts metav1.ListOptions) ([]workload, error)
	get          func(ctx context.Context, name string) (workload, error)
	// patch applies a JSON merge patch to the object itself (not its
	// scale subresource), so the count and the annotation change in one
	// write.
	patch func(ctx context.Context, name string, body []byte) error
}

// kinds are the workload types Synapse and MAS run as.
func (c *Controller) kinds() []kind {
	apps := c.client.AppsV1()
	return []kind{
		newKind("statefulset", apps.StatefulSets(c.namespace),
			func(l *appsv1.StatefulSetList) []appsv1.StatefulSet { return l.Items },
			func(s *appsv1.StatefulSet) workload {
				return read(s.ObjectMeta, s.Spec.Replicas, s.Spec.Selector, s.Status.ReadyReplicas, s.Status.ObservedGeneration)
			}),
		newKind("deployment", apps.Deployments(c.namespace),
			func(l *appsv1.DeploymentList) []appsv1.Deployment { return l.Items },
			func(d *appsv1.Deployment) workload {
				return read(d.ObjectMeta, d.Spec.Replicas, d.Spec.Selector, d.Status.ReadyReplicas, d.Status.ObservedGeneration)
			}),
	}
}

// typedClient is what a kind needs of client-go's typed client of one
// workload type.
type typedClient[T, L any] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions,
		subresources ...string) (T, error)
}

// newKind adapts a typed client; items takes the objects out of a list
// and conv reads one.
func newKind[T, L any](name string, client typedClient[*T, *L], items func(*L) []T, conv func(*T) workload) kind {
	k := kind{name: name, plural: name + "s"}
	k.list = func(ctx context.Context, opts metav1.ListOptions) ([]workload, error) {
		l, err := client.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		var found []workload
		for _, obj := range items(l) {
			w := conv(&obj)
			w.api = k
			found = append(found, w)
		}
		return found, nil
	}
	k.get = func(ctx context.Context, name string) (workload, error) {
		obj, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return workload{}, err
		}
		w := conv(obj)
		w.api = k
		return w, nil
	}
	k.patch = func(ctx context.Context, name string, body []byte) error {
		_, err := client.Patch(ctx, name, types.MergePatchType, body, metav1.PatchOptions{})
		return err
	}
	return k
}

// read takes the fields the controller uses from either workload type.
func read(m metav1.ObjectMeta, replicas *int32, selector *metav1.LabelSelector, ready int32, observed int64) workload {
	w := workload{
		name:            m.Name,
		resourceVersion: m.ResourceVersion,
		replicas:        1,
		ready:           ready,
		generation:      m.Generation,
		observed:        observed,
		selector:        selector,
	}
	if replicas != nil {
		w.replicas = *replicas
	}
	w.annotation, w.hasAnnotation = m.Annotations[ReplicasAnnotation]
	return w
}
