package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/masflow/masflow/internal/homeserver"
	"go.yaml.in/yaml/v3"
)

const (
	ns              = "matrix"
	component       = "app.kubernetes.io/component"
	synapseSelector = component + "=matrix-server"
	masSelector     = component + "=matrix-authentication"
)

var (
	stsGVR = appsv1.SchemeGroupVersion.WithResource("statefulsets")
	depGVR = appsv1.SchemeGroupVersion.WithResource("deployments")
	podGVR = corev1.SchemeGroupVersion.WithResource("pods")
)

// meta is a workload's metadata: the component label selects it, the
// name label selects its pods.
func meta(namespace, name, comp string, annotations map[string]string) (metav1.ObjectMeta, *metav1.LabelSelector) {
	return metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{component: comp},
			Annotations: annotations},
		&metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": name}}
}

func statefulSet(namespace, name, comp string, replicas int32, annotations map[string]string) *appsv1.StatefulSet {
	m, sel := meta(namespace, name, comp, annotations)
	return &appsv1.StatefulSet{ObjectMeta: m, Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Selector: sel}}
}

func deployment(namespace, name, comp string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	m, sel := meta(namespace, name, comp, annotations)
	return &appsv1.Deployment{ObjectMeta: m, Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: sel}}
}

func pod(name, app string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{"app.kubernetes.io/name": app}}, Status: corev1.PodStatus{Phase: phase}}
}

// deploymentOfSynapse is the fixture: Synapse's main process and a
// worker, Element Web (other labels), MAS, and a Synapse in another
// namespace.
func deploymentOfSynapse() []runtime.Object {
	return []runtime.Object{
		statefulSet(ns, "synapse-main", "matrix-server", 1, nil),
		deployment(ns, "synapse-worker", "matrix-server", 2, nil),
		deployment(ns, "element-web", "matrix-client", 1, nil),
		deployment(ns, "mas", "matrix-authentication", 1, nil),
		statefulSet("staging", "synapse-main", "matrix-server", 1, nil),
	}
}

// simulateControllers plays, now and whenever the controller lists
// something, the part of Kubernetes the fake clientset lacks: every
// workload gets exactly spec.replicas pods, all ready.
func simulateControllers(t *testing.T, cs *fake.Clientset) {
	reconcile := func() {
		tr := cs.Tracker()
		for _, s := range list[*appsv1.StatefulSetList](t, tr, stsGVR, "StatefulSet", "").Items {
			s.Status.ReadyReplicas = syncPods(t, tr, s.Namespace, s.Name, *s.Spec.Replicas)
			must(t, tr.Update(stsGVR, &s, s.Namespace))
		}
		for _, d := range list[*appsv1.DeploymentList](t, tr, depGVR, "Deployment", "").Items {
			d.Status.ReadyReplicas = syncPods(t, tr, d.Namespace, d.Name, *d.Spec.Replicas)
			must(t, tr.Update(depGVR, &d, d.Namespace))
		}
	}
	reconcile()
	cs.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		reconcile()
		return false, nil, nil
	})
}

// syncPods makes the pods of workload app number want and returns want.
func syncPods(t *testing.T, tr k8stesting.ObjectTracker, namespace, app string, want int32) int32 {
	mine := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/name": app})
	have := map[string]bool{}
	for _, p := range list[*corev1.PodList](t, tr, podGVR, "Pod", namespace).Items {
		if mine.Matches(labels.Set(p.Labels)) {
			have[p.Name] = true
		}
	}
	for i := range max(int(want), len(have)) {
		name := fmt.Sprintf("%s-%d", app, i)
		switch {
		case i < int(want) && !have[name]:
			p := pod(name, app, corev1.PodRunning)
			p.Namespace = namespace
			must(t, tr.Add(p))
		case i >= int(want) && have[name]:
			must(t, tr.Delete(podGVR, namespace, name))
		}
	}
	return want
}

func list[L runtime.Object](t *testing.T, tr k8stesting.ObjectTracker, gvr schema.GroupVersionResource, kind,
	namespace string) L {
	t.Helper()
	obj, err := tr.List(gvr, gvr.GroupVersion().WithKind(kind), namespace)
	must(t, err)
	return obj.(L)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// state shows every workload as "namespace kind/name": "replicas" or
// "replicas (recorded n)", and lists the pods, straight from the
// tracker so that looking changes nothing.
func state(t *testing.T, cs *fake.Clientset) (map[string]string, []string) {
	t.Helper()
	tr := cs.Tracker()
	got := map[string]string{}
	show := func(kind string, m metav1.ObjectMeta, replicas int32) {
		v := fmt.Sprint(replicas)
		if n, ok := m.Annotations[ReplicasAnnotation]; ok {
			v += " (recorded " + n + ")"
		}
		got[m.Namespace+" "+kind+"/"+m.Name] = v
	}
	for _, s := range list[*appsv1.StatefulSetList](t, tr, stsGVR, "StatefulSet", "").Items {
		show("statefulset", s.ObjectMeta, *s.Spec.Replicas)
	}
	for _, d := range list[*appsv1.DeploymentList](t, tr, depGVR, "Deployment", "").Items {
		show("deployment", d.ObjectMeta, *d.Spec.Replicas)
	}
	var pods []string
	for _, p := range list[*corev1.PodList](t, tr, podGVR, "Pod", "").Items {
		pods = append(pods, p.Namespace+"/"+p.Name)
	}
	slices.Sort(pods)
	return got, pods
}

// untouched is the fixture's state with changes applied.
func untouched(changes map[string]string) map[string]string {
	s := map[string]string{
		"matrix statefulset/synapse-main":  "1",
		"matrix deployment/synapse-worker": "2",
		"matrix deployment/element-web":    "1",
		"matrix deployment/mas":            "1",
		"staging statefulset/synapse-main": "1",
	}
	maps.Copy(s, changes)
	return s
}

var (
	allPods     = []string{"matrix/element-web-0", "matrix/mas-0", "matrix/synapse-main-0", "matrix/synapse-worker-0", "matrix/synapse-worker-1", "staging/synapse-main-0"}
	synapseDown = []string{"matrix/element-web-0", "matrix/mas-0", "staging/synapse-main-0"}
	synapseOff  = map[string]string{"matrix statefulset/synapse-main": "0 (recorded 1)", "matrix deployment/synapse-worker": "0 (recorded 2)"}
)

// op is one call: a stop, or a start with the given counts or with what
// the last stop returned.
type op struct {
	start    bool
	svc      homeserver.Service
	recorded map[string]int32
	fromStop bool
}

var (
	stopSynapse      = op{svc: homeserver.Synapse}
	restartSynapse   = op{start: true, svc: homeserver.Synapse, fromStop: true}
	startAnnotations = op{start: true, svc: homeserver.Synapse}
)

func TestScaleToZeroAndBack(t *testing.T) {
	cases := []struct {
		name       string
		masSel     string
		setup      []runtime.Object // replace fixture objects of the same name
		ops        []op
		wantOut    string
		wantCounts map[string]int32
		wantState  map[string]string
		wantPods   []string
	}{
		{name: "stop scales exactly Synapse's workloads to zero and records their counts on them",
			ops:        []op{stopSynapse},
			wantOut:    "statefulset/synapse-main: 1 → 0; deployment/synapse-worker: 2 → 0",
			wantCounts: map[string]int32{"statefulset/synapse-main": 1, "deployment/synapse-worker": 2},
			wantState:  untouched(synapseOff), wantPods: synapseDown},
		{name: "a retried stop reports the counts from before the first",
			ops:        []op{stopSynapse, stopSynapse},
			wantOut:    "statefulset/synapse-main: 1 → 0; deployment/synapse-worker: 2 → 0",
			wantCounts: map[string]int32{"statefulset/synapse-main": 1, "deployment/synapse-worker": 2},
			wantState:  untouched(synapseOff), wantPods: synapseDown},
		{name: "a stop keeps the count an earlier stop recorded, also when someone scaled up since",
			setup:      []runtime.Object{deployment(ns, "synapse-worker", "matrix-server", 5, map[string]string{ReplicasAnnotation: "2"})},
			ops:        []op{stopSynapse},
			wantOut:    "statefulset/synapse-main: 1 → 0; deployment/synapse-worker: 2 → 0",
			wantCounts: map[string]int32{"statefulset/synapse-main": 1, "deployment/synapse-worker": 2},
			wantState:  untouched(synapseOff), wantPods: synapseDown},
		{name: "start restores the recorded counts and removes the annotations",
			ops:       []op{stopSynapse, restartSynapse},
			wantOut:   "statefulset/synapse-main: 0 → 1; deployment/synapse-worker: 0 → 2",
			wantState: untouched(nil), wantPods: allPods},
		{name: "start without recorded counts restores the annotations' counts",
			ops:       []op{stopSynapse, startAnnotations},
			wantOut:   "statefulset/synapse-main: 0 → 1; deployment/synapse-worker: 0 → 2",
			wantState: untouched(nil), wantPods: allPods},
		{name: "a recorded count wins over the annotation",
			ops: []op{stopSynapse, {start: true, svc: homeserver.Synapse,
				recorded: map[string]int32{"statefulset/synapse-main": 3}}},
			wantOut:   "statefulset/synapse-main: 0 → 3; deployment/synapse-worker: 0 → 2",
			wantState: untouched(map[string]string{"matrix statefulset/synapse-main": "3"}),
			wantPods: []string{"matrix/element-web-0", "matrix/mas-0", "matrix/synapse-main-0", "matrix/synapse-main-1",
				"matrix/synapse-main-2", "matrix/synapse-worker-0", "matrix/synapse-worker-1", "staging/synapse-main-0"}},
		{name: "a retried start keeps the counts",
			ops:       []op{stopSynapse, restartSynapse, restartSynapse},
			wantOut:   "statefulset/synapse-main: 1 → 1; deployment/synapse-worker: 2 → 2",
			wantState: untouched(nil), wantPods: allPods},
		{name: "a workload already at zero is left there and not recorded",
			setup: []runtime.Object{deployment(ns, "synapse-worker", "matrix-server", 0, nil)},
			ops:   []op{stopSynapse},
			wantOut: "statefulset/synapse-main: 1 → 0; " +
				"deployment/synapse-worker: already 0 and nothing recorded, left at 0",
			wantCounts: map[string]int32{"statefulset/synapse-main": 1},
			wantState: untouched(map[string]string{"matrix statefulset/synapse-main": "0 (recorded 1)",
				"matrix deployment/synapse-worker": "0"}),
			wantPods: synapseDown},
		{name: "start leaves a workload with no recorded count alone",
			setup: []runtime.Object{deployment(ns, "synapse-worker", "matrix-server", 0, nil)},
			ops:   []op{stopSynapse, restartSynapse},
			wantOut: "statefulset/synapse-main: 0 → 1; " +
				"deployment/synapse-worker: no recorded count, left at 0",
			wantState: untouched(map[string]string{"matrix deployment/synapse-worker": "0"}),
			wantPods:  []string{"matrix/element-web-0", "matrix/mas-0", "matrix/synapse-main-0", "staging/synapse-main-0"}},
		{name: "an empty MAS selector stops nothing",
			ops:       []op{{svc: homeserver.MAS}},
			wantOut:   "homeserver.kubernetes.mas_selector is empty: nothing to stop",
			wantState: untouched(nil), wantPods: allPods},
		{name: "an empty MAS selector starts nothing",
			ops:       []op{{start: true, svc: homeserver.MAS, recorded: map[string]int32{"deployment/mas": 4}}},
			wantOut:   "homeserver.kubernetes.mas_selector is empty: nothing to start",
			wantState: untouched(nil), wantPods: allPods},
		{name: "the MAS selector stops MAS alone", masSel: masSelector,
			ops:        []op{{svc: homeserver.MAS}},
			wantOut:    "deployment/mas: 1 → 0",
			wantCounts: map[string]int32{"deployment/mas": 1},
			wantState:  untouched(map[string]string{"matrix deployment/mas": "0 (recorded 1)"}),
			wantPods: []string{"matrix/element-web-0", "matrix/synapse-main-0", "matrix/synapse-worker-0",
				"matrix/synapse-worker-1", "staging/synapse-main-0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := fake.NewClientset(deploymentOfSynapse()...)
			for _, obj := range c.setup {
				must(t, cs.Tracker().Update(depGVR, obj, ns))
			}
			simulateControllers(t, cs)
			ctrl := quick(cs, c.masSel)
			var out, stopped homeserver.Outcome
			for _, o := range c.ops {
				ctx := within(t, 5*time.Second)
				var err error
				if o.start {
					recorded := o.recorded
					if o.fromStop {
						recorded = stopped.Replicas
					}
					out, err = ctrl.Start(ctx, o.svc, recorded)
				} else {
					out, err = ctrl.Stop(ctx, o.svc)
					stopped = out
				}
				must(t, err)
			}
			if out.Output != c.wantOut {
				t.Errorf("output %q, want %q", out.Output, c.wantOut)
			}
			if len(out.Replicas)+len(c.wantCounts) > 0 && !maps.Equal(out.Replicas, c.wantCounts) {
				t.Errorf("replicas %v, want %v", out.Replicas, c.wantCounts)
			}
			got, pods := state(t, cs)
			if !maps.Equal(got, c.wantState) {
				t.Errorf("workloads:\n%v\nwant:\n%v", got, c.wantState)
			}
			if !slices.Equal(pods, c.wantPods) {
				t.Errorf("pods %v, want %v", pods, c.wantPods)
			}
		})
	}
}

// quick is a controller of the fixture's selectors that looks again
// every millisecond.
func quick(cs *fake.Clientset, masSel string) *Controller {
	c := New(cs, ns, synapseSelector, masSel)
	c.poll = time.Millisecond
	return c
}

// within is a context that ends after d, or with the test.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// onList runs react before the n-th list of resource is answered (n
// from 1) and counts the lists.
func onList(cs *fake.Clientset, resource string, react func(n int)) *int {
	n := new(int)
	cs.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		*n++
		react(*n)
		return false, nil, nil
	})
	return n
}

func TestStopWaitsUntilNoPodRemains(t *testing.T) {
	cs := fake.NewClientset(statefulSet(ns, "synapse-main", "matrix-server", 1, nil),
		pod("synapse-main-0", "synapse-main", corev1.PodRunning),
		pod("synapse-main-evicted", "synapse-main", corev1.PodFailed))
	lists := onList(cs, "pods", func(n int) {
		if n == 3 {
			must(t, cs.Tracker().Delete(podGVR, ns, "synapse-main-0"))
		}
	})
	ctrl, ctx := quick(cs, ""), within(t, 5*time.Second)
	if _, err := ctrl.Stop(ctx, homeserver.Synapse); err != nil {
		t.Fatal(err)
	}
	// Two looks saw the pod; the third, after its deletion, saw only the
	// evicted one, which runs nothing.
	if *lists != 3 {
		t.Fatalf("pods listed %d times, want 3", *lists)
	}
}

func TestStopGivesUpNamingThePodsLeft(t *testing.T) {
	cs := fake.NewClientset(statefulSet(ns, "synapse-main", "matrix-server", 1, nil),
		deployment(ns, "synapse-worker", "matrix-server", 0, map[string]string{ReplicasAnnotation: "2"}),
		pod("synapse-main-0", "synapse-main", corev1.PodRunning),
		pod("synapse-worker-7f9c-x2", "synapse-worker", corev1.PodRunning),
		pod("synapse-worker-7f9c-a1", "synapse-worker", corev1.PodPending))
	ctrl, ctx := quick(cs, ""), within(t, 50*time.Millisecond)
	_, err := ctrl.Stop(ctx, homeserver.Synapse)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"namespace matrix: pods remain after the scale to 0",
		"statefulset/synapse-main: synapse-main-0; deployment/synapse-worker: synapse-worker-7f9c-a1, synapse-worker-7f9c-x2",
		"kubectl -n matrix describe pod"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !errors.Is(err, homeserver.ErrNotYet) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not ErrNotYet and DeadlineExceeded", err)
	}
	// The scale happened: a retry only waits.
	got, _ := state(t, cs)
	want := map[string]string{"matrix statefulset/synapse-main": "0 (recorded 1)",
		"matrix deployment/synapse-worker": "0 (recorded 2)"}
	if !maps.Equal(got, want) {
		t.Errorf("workloads %v, want %v", got, want)
	}
}

// setStatus sets synapse-main's generation, observed generation and
// ready replicas, as the API server and the StatefulSet controller would.
func setStatus(t *testing.T, cs *fake.Clientset, generation, observed int64, ready int32) {
	obj, err := cs.Tracker().Get(stsGVR, ns, "synapse-main")
	must(t, err)
	s := obj.(*appsv1.StatefulSet)
	s.Generation, s.Status.ObservedGeneration, s.Status.ReadyReplicas = generation, observed, ready
	must(t, cs.Tracker().Update(stsGVR, s, ns))
}

func TestStartWaitsForEveryReplicaReadyOfTheCurrentSpec(t *testing.T) {
	stopped := statefulSet(ns, "synapse-main", "matrix-server", 0, map[string]string{ReplicasAnnotation: "2"})
	stopped.Generation, stopped.Status.ObservedGeneration = 4, 4
	cs := fake.NewClientset(stopped)
	lists := onList(cs, "statefulsets", func(n int) {
		switch n {
		case 2: // the new spec, not yet seen by the StatefulSet controller
			setStatus(t, cs, 5, 4, 0)
		case 3: // a status of the old spec
			setStatus(t, cs, 5, 4, 2)
		case 4:
			setStatus(t, cs, 5, 5, 1)
		case 5:
			setStatus(t, cs, 5, 5, 2)
		}
	})
	ctrl, ctx := quick(cs, ""), within(t, 5*time.Second)
	out, err := ctrl.Start(ctx, homeserver.Synapse, nil)
	if err != nil {
		t.Fatal(err)
	}
	// One list to find the workload, then looks at: generation not yet
	// observed, a stale status, 1 of 2 ready, 2 of 2 ready.
	if *lists != 5 || out.Output != "statefulset/synapse-main: 0 → 2" {
		t.Fatalf("listed %d times, want 5; output %q", *lists, out.Output)
	}
}

func TestStartGivesUpNamingWhatIsNotReady(t *testing.T) {
	cs := fake.NewClientset(statefulSet(ns, "synapse-main", "matrix-server", 0, map[string]string{ReplicasAnnotation: "2"}))
	onList(cs, "statefulsets", func(n int) {
		if n > 1 {
			setStatus(t, cs, 0, 0, 1)
		}
	})
	ctrl, ctx := quick(cs, ""), within(t, 50*time.Millisecond)
	_, err := ctrl.Start(ctx, homeserver.Synapse, nil)
	if err == nil || !errors.Is(err, homeserver.ErrNotYet) {
		t.Fatalf("got %v, want ErrNotYet", err)
	}
	want := "namespace matrix: workloads not ready after the scale up: statefulset/synapse-main: 1 of 2 ready"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
}

func TestAStopRaceReReadsTheWorkload(t *testing.T) {
	cs := fake.NewClientset(statefulSet(ns, "synapse-main", "matrix-server", 1, nil))
	var patches []string
	cs.PrependReactor("patch", "statefulsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		patches = append(patches, string(a.(k8stesting.PatchAction).GetPatch()))
		if len(patches) > 1 {
			return false, nil, nil
		}
		// Someone scales it to 3 between the controller's read and write.
		must(t, cs.Tracker().Update(stsGVR, statefulSet(ns, "synapse-main", "matrix-server", 3, nil), ns))
		return true, nil, apierrors.NewConflict(stsGVR.GroupResource(), "synapse-main", errors.New("modified"))
	})
	ctrl := New(cs, ns, synapseSelector, "")
	out, err := ctrl.Stop(context.Background(), homeserver.Synapse)
	if err != nil {
		t.Fatal(err)
	}
	if out.Replicas["statefulset/synapse-main"] != 3 || len(patches) != 2 ||
		!strings.Contains(patches[1], `"masflow.io/replicas-before-stop":"3"`) {
		t.Fatalf("replicas %v, patches %q", out.Replicas, patches)
	}
	if got, _ := state(t, cs); got["matrix statefulset/synapse-main"] != "0 (recorded 3)" {
		t.Fatalf("workloads %v", got)
	}
}

func TestErrorsNameTheNamespaceWorkloadAndFix(t *testing.T) {
	forbid := func(verb, resource string) func(*fake.Clientset) {
		return func(cs *fake.Clientset) {
			cs.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "",
					errors.New(`User "system:serviceaccount:matrix:default" cannot `+verb))
			})
		}
	}
	rbac := "the worker's service account needs get, list and patch on statefulsets and deployments " +
		"and list on pods in namespace matrix (deployments/kubernetes/masflow-rbac.yaml"
	cases := []struct {
		name     string
		selector string
		objects  []runtime.Object
		break_   func(*fake.Clientset)
		want     []string
		// unchanged: the step fails before it patches anything.
		unchanged bool
	}{
		{name: "listing forbidden: the RBAC it needs", selector: synapseSelector,
			break_: forbid("list", "statefulsets"),
			want:   []string{"namespace matrix: listing statefulsets matching " + synapseSelector, rbac}},
		{name: "scaling forbidden: the workload and the RBAC it needs", selector: synapseSelector,
			objects: []runtime.Object{deployment(ns, "synapse-worker", "matrix-server", 2, nil)},
			break_:  forbid("patch", "deployments"),
			want:    []string{"namespace matrix: scaling deployment/synapse-worker", rbac}},
		{name: "listing pods forbidden", selector: synapseSelector,
			objects: []runtime.Object{statefulSet(ns, "synapse-main", "matrix-server", 1, nil)},
			break_:  forbid("list", "pods"),
			want:    []string{"namespace matrix: listing the pods of statefulset/synapse-main", rbac}},
		{name: "a selector matching nothing is a mistake", selector: synapseSelector,
			objects: []runtime.Object{deployment(ns, "mas", "matrix-authentication", 1, nil)},
			want: []string{"namespace matrix: no StatefulSet or Deployment matches homeserver.kubernetes.synapse_selector",
				"kubectl -n matrix get statefulsets,deployments -l '" + synapseSelector + "'"}},
		{name: "a malformed selector names the setting", selector: "app in (",
			want: []string{`homeserver.kubernetes.synapse_selector "app in (" is not a label selector`}},
		{name: "a malformed annotation names it and the fix, before anything changes", selector: synapseSelector,
			objects: []runtime.Object{deployment(ns, "synapse-worker", "matrix-server", 2, nil),
				statefulSet(ns, "synapse-main", "matrix-server", 1, map[string]string{ReplicasAnnotation: "one"})},
			unchanged: true,
			want: []string{`namespace matrix: statefulset/synapse-main has annotation masflow.io/replicas-before-stop="one"`,
				"kubectl -n matrix annotate --overwrite statefulset/synapse-main masflow.io/replicas-before-stop=<n>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := fake.NewClientset(c.objects...)
			if c.break_ != nil {
				c.break_(cs)
			}
			_, err := New(cs, ns, c.selector, "").Stop(context.Background(), homeserver.Synapse)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, a := range cs.Actions() {
				if c.unchanged && a.GetVerb() == "patch" {
					t.Errorf("patched %s although the step failed", a.GetResource().Resource)
				}
			}
		})
	}
}

func TestTheRBACRoleGrantsExactlyWhatTheControllerUses(t *testing.T) {
	b, err := os.ReadFile("../../../deployments/kubernetes/masflow-rbac.yaml")
	must(t, err)
	granted := map[string]bool{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind  string
			Rules []struct {
				APIGroups []string `yaml:"apiGroups"`
				Resources []string
				Verbs     []string
			}
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else {
			must(t, err)
		}
		for _, r := range doc.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						granted[v+" "+g+"/"+res] = true
					}
				}
			}
		}
	}

	// A whole cycle of both services, with a conflict on the first patch
	// of each kind so that the re-read happens too.
	cs := fake.NewClientset(deploymentOfSynapse()...)
	simulateControllers(t, cs)
	conflicted := map[string]bool{}
	cs.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if conflicted[a.GetResource().Resource] {
			return false, nil, nil
		}
		conflicted[a.GetResource().Resource] = true
		return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), "", errors.New("modified"))
	})
	ctrl, ctx := quick(cs, masSelector), within(t, 5*time.Second)
	for _, svc := range []homeserver.Service{homeserver.Synapse, homeserver.MAS} {
		out, err := ctrl.Stop(ctx, svc)
		must(t, err)
		_, err = ctrl.Start(ctx, svc, out.Replicas)
		must(t, err)
	}
	used := map[string]bool{}
	for _, a := range cs.Actions() {
		res := a.GetResource().Resource
		if a.GetSubresource() != "" {
			res += "/" + a.GetSubresource()
		}
		used[a.GetVerb()+" "+a.GetResource().Group+"/"+res] = true
	}
	if !maps.Equal(used, granted) {
		t.Fatalf("the controller uses %v\nmasflow-rbac.yaml grants %v", slices.Sorted(maps.Keys(used)),
			slices.Sorted(maps.Keys(granted)))
	}
}

func TestClientSaysWhichCredentialsItLacks(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://k8s.example:6443"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	if client, err := Client(good); err != nil || client == nil {
		t.Fatalf("kubeconfig %s: %v", good, err)
	}
	missing := filepath.Join(dir, "absent")
	if _, err := Client(missing); err == nil ||
		!strings.Contains(err.Error(), "reading homeserver.kubernetes.kubeconfig "+missing) {
		t.Fatalf("missing kubeconfig: %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := Client(""); err == nil ||
		!strings.Contains(err.Error(), "run the worker in a pod with the masflow-worker service account") {
		t.Fatalf("no in-cluster credentials: %v", err)
	}
}
