// Package kube stops and starts Synapse and MAS on Kubernetes by scaling
// their StatefulSets and Deployments to zero and back (the homeserver
// spec, "Stopping and starting"). The replica count a workload ran with is kept
// on the workload itself, so a worker that crashes between the stop and
// the start still knows what to bring back.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/masflow/masflow/internal/homeserver"
)

// ReplicasAnnotation holds, on a stopped workload, the replica count it
// ran with before masflow scaled it to zero; the start restores it and
// removes the annotation.
const ReplicasAnnotation = "masflow.io/replicas-before-stop"

// defaultPoll is the interval between two looks at pods or readiness.
const defaultPoll = 2 * time.Second

// rbacHint is the fix for a forbidden call: the permissions
// deployments/kubernetes/masflow-rbac.yaml grants.
const rbacHint = "the worker's service account needs get, list and patch on statefulsets and deployments " +
	"and list on pods in namespace %s (deployments/kubernetes/masflow-rbac.yaml grants exactly that)"

// Controller scales Synapse's and MAS's workloads (StatefulSets and
// Deployments matching a label selector in a namespace) to zero and back.
// It implements homeserver.Processes.
type Controller struct {
	client    kubernetes.Interface
	namespace string
	selectors map[homeserver.Service]string
	// poll is the interval between two looks while waiting.
	poll time.Duration
}

var _ homeserver.Processes = (*Controller)(nil)

// New returns a controller of the workloads in namespace that match
// synapseSelector (Synapse and its workers) and masSelector (MAS; empty
// when MAS does not run in this namespace or is not masflow's to stop).
func New(client kubernetes.Interface, namespace, synapseSelector, masSelector string) *Controller {
	return &Controller{
		client:    client,
		namespace: namespace,
		selectors: map[homeserver.Service]string{homeserver.Synapse: synapseSelector, homeserver.MAS: masSelector},
		poll:      defaultPoll,
	}
}

// RunBy is svc: each service has its own selector.
func (c *Controller) RunBy(_ homeserver.Action, svc homeserver.Service) homeserver.Service {
	return svc
}

// Client builds a clientset from a kubeconfig path, or in-cluster
// credentials when path is "".
func Client(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("homeserver.kubernetes.kubeconfig is empty, so in-cluster credentials are used, "+
				"but there are none (%w): run the worker in a pod with the masflow-worker service account, "+
				"or set homeserver.kubernetes.kubeconfig", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("reading homeserver.kubernetes.kubeconfig %s: %w", kubeconfig, err)
		}
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building a Kubernetes client for %s: %w", cfg.Host, err)
	}
	return client, nil
}

// Stop records each running workload's replica count on it and scales it
// to zero, then waits until none of their pods remains; ctx bounds the
// wait, and when it ends first the error names the pods left and wraps
// homeserver.ErrNotYet. Outcome.Replicas are the counts before the first
// stop, also when this one is a retry.
func (c *Controller) Stop(ctx context.Context, svc homeserver.Service) (homeserver.Outcome, error) {
	found, skip, err := c.workloads(ctx, svc, "stop")
	if err != nil || skip != "" {
		return homeserver.Outcome{Output: skip}, err
	}
	out := homeserver.Outcome{Replicas: map[string]int32{}}
	var lines []string
	for i, w := range found {
		if w, err = c.update(ctx, w, stopPatch); err != nil {
			return homeserver.Outcome{}, err
		}
		found[i] = w
		before, recorded, err := c.stoppedFrom(w)
		switch {
		case err != nil:
			return homeserver.Outcome{}, err
		case recorded:
			out.Replicas[w.key()] = before
			lines = append(lines, fmt.Sprintf("%s: %d → 0", w.key(), before))
		default:
			lines = append(lines, w.key()+": already 0 and nothing recorded, left at 0")
		}
	}
	out.Output = strings.Join(lines, "; ")
	gone := func(ctx context.Context) ([]string, error) { return c.podsLeft(ctx, found) }
	if err := c.waitFor(ctx, gone); err != nil {
		return homeserver.Outcome{}, fmt.Errorf("namespace %s: pods remain after the scale to 0: %w; "+
			"see why with kubectl -n %s describe pod <name> (a finalizer, a long terminationGracePeriodSeconds?)",
			c.namespace, err, c.namespace)
	}
	return out, nil
}

// Start scales each workload to its recorded count (recorded, else the
// workload's annotation; a workload with neither is left alone), removes
// the annotation and waits, bounded by ctx like Stop's, until the
// workload reports that many ready replicas.
func (c *Controller) Start(ctx context.Context, svc homeserver.Service, recorded map[string]int32) (homeserver.Outcome, error) {
	found, skip, err := c.workloads(ctx, svc, "start")
	if err != nil || skip != "" {
		return homeserver.Outcome{Output: skip}, err
	}
	targets := map[string]int32{}
	var lines []string
	for _, w := range found {
		target, ok := recorded[w.key()]
		if !ok {
			if target, ok, err = c.recordedCount(w); err != nil {
				return homeserver.Outcome{}, err
			}
		}
		if !ok {
			lines = append(lines, fmt.Sprintf("%s: no recorded count, left at %d", w.key(), w.replicas))
			continue
		}
		if w, err = c.update(ctx, w, startPatch(target)); err != nil {
			return homeserver.Outcome{}, err
		}
		targets[w.key()] = target
		lines = append(lines, fmt.Sprintf("%s: %d → %d", w.key(), w.replicas, target))
	}
	ready := func(ctx context.Context) ([]string, error) { return c.notReady(ctx, svc, targets) }
	if err := c.waitFor(ctx, ready); err != nil {
		return homeserver.Outcome{}, fmt.Errorf("namespace %s: workloads not ready after the scale up: %w; "+
			"see why with kubectl -n %s describe <workload> and the logs of its pods",
			c.namespace, err, c.namespace)
	}
	return homeserver.Outcome{Output: strings.Join(lines, "; ")}, nil
}

// workloads lists the workloads of svc and checks what they recorded;
// skip says why there is nothing to do when its selector is empty.
func (c *Controller) workloads(ctx context.Context, svc homeserver.Service, verb string) ([]workload, string, error) {
	selector, key := c.selectors[svc], "homeserver.kubernetes."+string(svc)+"_selector"
	if selector == "" {
		return nil, key + " is empty: nothing to " + verb, nil
	}
	if _, err := labels.Parse(selector); err != nil {
		return nil, "", fmt.Errorf("%s %q is not a label selector (%w); use the form key=value[,key=value]",
			key, selector, err)
	}
	found, err := c.list(ctx, selector)
	if err != nil {
		return nil, "", err
	}
	if len(found) == 0 {
		return nil, "", fmt.Errorf("namespace %s: no StatefulSet or Deployment matches %s %q; check "+
			"homeserver.kubernetes.namespace and the selector (kubectl -n %s get statefulsets,deployments -l '%s')",
			c.namespace, key, selector, c.namespace, selector)
	}
	// A malformed record stops the step before it changes anything.
	for _, w := range found {
		if _, _, err := c.recordedCount(w); err != nil {
			return nil, "", err
		}
	}
	return found, "", nil
}

// list reads the StatefulSets, then the Deployments, matching selector,
// each kind in name order.
func (c *Controller) list(ctx context.Context, selector string) ([]workload, error) {
	var all []workload
	for _, k := range c.kinds() {
		found, err := k.list(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, c.apiError(err, "listing "+k.plural+" matching "+selector)
		}
		slices.SortFunc(found, func(a, b workload) int { return strings.Compare(a.name, b.name) })
		all = append(all, found...)
	}
	return all, nil
}

// update applies the merge patch plan makes of w (none when plan returns
// nil); when w changed since it was read, it reads it again and asks plan
// anew. It returns the workload as last read, before the patch.
func (c *Controller) update(ctx context.Context, w workload, plan func(workload) []byte) (workload, error) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		body := plan(w)
		if body == nil {
			return nil
		}
		err := w.api.patch(ctx, w.name, body)
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh, gerr := w.api.get(ctx, w.name)
		if gerr != nil {
			return gerr
		}
		w = fresh
		return err
	})
	if err != nil {
		return w, c.apiError(err, "scaling "+w.key())
	}
	return w, nil
}

// stopPatch scales w to zero. In the same write it records the count it
// ran with, unless a stop before this one already did: a retried stop
// must not record the 0 the first one left. The resourceVersion makes
// the write fail, and update read again, when someone scaled w since.
func stopPatch(w workload) []byte {
	if w.replicas == 0 {
		return nil
	}
	var annotations map[string]any
	if !w.hasAnnotation {
		annotations = map[string]any{ReplicasAnnotation: strconv.Itoa(int(w.replicas))}
	}
	return scalePatch(0, annotations, w.resourceVersion)
}

// startPatch scales w to target and removes the annotation.
func startPatch(target int32) func(workload) []byte {
	return func(w workload) []byte {
		if w.replicas == target && !w.hasAnnotation {
			return nil
		}
		return scalePatch(target, map[string]any{ReplicasAnnotation: nil}, w.resourceVersion)
	}
}

// scalePatch is a JSON merge patch of spec.replicas and annotations (a
// nil value removes one), conditional on resourceVersion.
func scalePatch(replicas int32, annotations map[string]any, resourceVersion string) []byte {
	meta := map[string]any{"resourceVersion": resourceVersion}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	// Maps of strings and numbers always marshal.
	body, _ := json.Marshal(map[string]any{"metadata": meta, "spec": map[string]any{"replicas": replicas}})
	return body
}

// stoppedFrom is the count w ran with before the stop, as read before
// stopPatch: its annotation, else its replicas when they were not 0;
// ok is false when it was at 0 with nothing recorded.
func (c *Controller) stoppedFrom(w workload) (n int32, ok bool, err error) {
	if !w.hasAnnotation && w.replicas > 0 {
		return w.replicas, true, nil
	}
	return c.recordedCount(w)
}

// recordedCount is the count the annotation of w holds; ok is false when
// w has none.
func (c *Controller) recordedCount(w workload) (n int32, ok bool, err error) {
	if !w.hasAnnotation {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(w.annotation, 10, 32)
	if err != nil || v < 0 {
		return 0, false, fmt.Errorf("namespace %s: %s has annotation %s=%q, not a replica count; set it to "+
			"the count to restore (kubectl -n %s annotate --overwrite %s %s=<n>) and retry",
			c.namespace, w.key(), ReplicasAnnotation, w.annotation, c.namespace, w.key(), ReplicasAnnotation)
	}
	return int32(v), true, nil
}

// waitFor polls pending until it reports nothing left; when ctx ends
// first, the error names what was left at the last look.
func (c *Controller) waitFor(ctx context.Context, pending func(context.Context) ([]string, error)) error {
	var left []string
	for {
		now, err := pending(ctx)
		switch {
		case err != nil && ctx.Err() != nil && left != nil:
			return fmt.Errorf("%s: %w (%w)", strings.Join(left, "; "), homeserver.ErrNotYet, ctx.Err())
		case err != nil:
			return err
		case len(now) == 0:
			return nil
		}
		left = now
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%w)", strings.Join(left, "; "), homeserver.ErrNotYet, ctx.Err())
		case <-time.After(c.poll):
		}
	}
}

// podsLeft names, per workload, the pods its selector still matches.
// Pods that ended (Succeeded or Failed, e.g. evicted ones the cluster
// keeps around) run nothing and do not count; pods being deleted do.
func (c *Controller) podsLeft(ctx context.Context, found []workload) ([]string, error) {
	var left []string
	for _, w := range found {
		selector, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || selector.Empty() {
			return nil, fmt.Errorf("namespace %s: %s has no usable pod selector (%v): masflow cannot tell its pods",
				c.namespace, w.key(), err)
		}
		pods, err := c.client.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			return nil, c.apiError(err, "listing the pods of "+w.key())
		}
		var names []string
		for _, p := range pods.Items {
			if p.Status.Phase != "Succeeded" && p.Status.Phase != "Failed" {
				names = append(names, p.Name)
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			left = append(left, w.key()+": "+strings.Join(names, ", "))
		}
	}
	return left, nil
}

// notReady names the workloads of svc that do not yet report their
// target's ready replicas for their current spec.
func (c *Controller) notReady(ctx context.Context, svc homeserver.Service, targets map[string]int32) ([]string, error) {
	if len(targets) == 0 {
		return nil, nil
	}
	found, err := c.list(ctx, c.selectors[svc])
	if err != nil {
		return nil, err
	}
	var left []string
	for _, w := range found {
		target, ok := targets[w.key()]
		if ok && (w.ready != target || w.observed < w.generation) {
			left = append(left, fmt.Sprintf("%s: %d of %d ready", w.key(), w.ready, target))
		}
	}
	return left, nil
}

// apiError says which call failed in which namespace and, for what an
// operator can fix, how.
func (c *Controller) apiError(err error, doing string) error {
	var hint string
	switch {
	case apierrors.IsForbidden(err):
		hint = "; " + fmt.Sprintf(rbacHint, c.namespace)
	case apierrors.IsUnauthorized(err):
		hint = "; the cluster does not accept the worker's credentials: check homeserver.kubernetes.kubeconfig " +
			"or the pod's service account token"
	case apierrors.IsNotFound(err):
		hint = "; it was deleted while masflow worked on it: check what manages it and retry"
	}
	return fmt.Errorf("namespace %s: %s: %w%s", c.namespace, doing, err, hint)
}
