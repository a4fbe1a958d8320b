package deployments

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/masflow/masflow/internal/config"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

const kubeDir = "kubernetes"

// kustomization is the part of kustomization.yaml the base uses; decoding
// is strict, so a field added there is added here too, with its check.
type kustomization struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Namespace  string `yaml:"namespace"`
	Labels     []struct {
		Pairs map[string]string `yaml:"pairs"`
	} `yaml:"labels"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	return k
}

// decodeManifests decodes every YAML document of r with the Kubernetes
// API types, strictly: an unknown kind or field is an error.
func decodeManifests(t *testing.T, name string, r io.Reader) []runtime.Object {
	t.Helper()
	codec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []runtime.Object
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := codec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: document %d does not decode as a Kubernetes object: %v", name, i, err)
		}
		if gvk.Kind == "" {
			t.Fatalf("%s: document %d has no kind", name, i)
		}
		out = append(out, obj)
	}
}

func stripComments(doc []byte) []byte {
	var keep [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			keep = append(keep, line)
		}
	}
	return bytes.Join(keep, []byte("\n"))
}

// kubeBase is the decoded base: its objects, by kind, and its settings.
type kubeBase struct {
	k        kustomization
	objects  []runtime.Object
	settings config.Settings
}

func loadKubeBase(t *testing.T) kubeBase {
	t.Helper()
	k := loadKustomization(t)
	base := kubeBase{k: k}
	for _, res := range k.Resources {
		f, err := os.Open(filepath.Join(kubeDir, res))
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", res, err)
		}
		base.objects = append(base.objects, decodeManifests(t, res, f)...)
		f.Close()
	}
	gen := configMapFile(t, k, "masflow-settings", "masflow.yaml")
	s, err := config.LoadSettings(gen, nil)
	if err != nil {
		t.Fatalf("the masflow-settings ConfigMap's masflow.yaml does not load: %v", err)
	}
	base.settings = s
	return base
}

// configMapFile is the path of a file a configMapGenerator puts in the
// ConfigMap.
func configMapFile(t *testing.T, k kustomization, name, key string) string {
	t.Helper()
	for _, g := range k.ConfigMapGenerator {
		if g.Name == name && slices.Contains(g.Files, key) {
			return filepath.Join(kubeDir, key)
		}
	}
	t.Fatalf("kustomization.yaml generates no ConfigMap %s with %s", name, key)
	return ""
}

func objectsOf[T runtime.Object](b kubeBase) []T {
	var out []T
	for _, o := range b.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// Every file of the base is used: manifests are listed as resources
// (masflow-rbac.yaml above all: the Kubernetes controller needs it), and
// each resource and generated file exists.
func TestKustomizationComplete(t *testing.T) {
	k := loadKustomization(t)
	if k.Namespace == "" {
		t.Error("kustomization.yaml sets no namespace")
	}
	if !slices.Contains(k.Resources, "masflow-rbac.yaml") {
		t.Error("kustomization.yaml does not include masflow-rbac.yaml")
	}
	used := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		used[r] = true
	}
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, err := os.Stat(filepath.Join(kubeDir, f)); err != nil {
				t.Errorf("configMapGenerator %s: %v", g.Name, err)
			}
			used[f] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("%s is not part of kustomization.yaml", f)
		}
	}
	loadKubeBase(t) // every resource exists and decodes
}

func TestKubernetesImagesPinned(t *testing.T) {
	b := loadKubeBase(t)
	specs := podSpecs(b)
	if len(specs) == 0 {
		t.Fatal("no pod templates found")
	}
	for name, spec := range specs {
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			if err := pinned(c.Image); err != nil {
				t.Errorf("%s container %s: %v", name, c.Name, err)
			}
		}
	}
}

// podSpecs are the pod templates of the base's workloads, by kind/name.
func podSpecs(b kubeBase) map[string]corev1.PodSpec {
	out := map[string]corev1.PodSpec{}
	for _, d := range objectsOf[*appsv1.Deployment](b) {
		out["Deployment/"+d.Name] = d.Spec.Template.Spec
	}
	for _, j := range objectsOf[*batchv1.Job](b) {
		out["Job/"+j.Name] = j.Spec.Template.Spec
	}
	return out
}

func workerDeployment(t *testing.T, b kubeBase) *appsv1.Deployment {
	t.Helper()
	ds := objectsOf[*appsv1.Deployment](b)
	if len(ds) != 1 {
		t.Fatalf("want one Deployment, the workers; have %d", len(ds))
	}
	return ds[0]
}

// The workers run as the service account masflow-rbac.yaml binds, two of
// them, with the worker's own flags and Temporal's address.
func TestKubernetesWorker(t *testing.T) {
	b := loadKubeBase(t)
	d := workerDeployment(t, b)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("worker replicas %v, want 2", d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != "masflow-worker" {
		t.Errorf("the workers run as service account %q, want masflow-worker", spec.ServiceAccountName)
	}
	var bound bool
	for _, rb := range objectsOf[*rbacv1.RoleBinding](b) {
		for _, s := range rb.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == spec.ServiceAccountName)
		}
	}
	if !bound || !slices.ContainsFunc(objectsOf[*corev1.ServiceAccount](b), func(sa *corev1.ServiceAccount) bool {
		return sa.Name == spec.ServiceAccountName
	}) {
		t.Errorf("service account %s is not defined and bound in the base", spec.ServiceAccountName)
	}
	sel, err := deploymentSelector(d)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the Deployment's selector does not match its pods (%v)", err)
	}
	c := spec.Containers[0]
	if bad := workerFlags(t).check(slices.Concat(c.Command[min(len(c.Command), 1):], c.Args)); len(bad) > 0 {
		t.Errorf("worker container: flags %q are not the worker's", bad)
	}
	checkTemporalEnv(t, "worker", c)
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("worker resources incomplete: %+v", c.Resources)
	}
}

func deploymentSelector(d *appsv1.Deployment) (labels.Selector, error) {
	if d.Spec.Selector == nil {
		return nil, errors.New("no selector")
	}
	return labels.SelectorFromSet(d.Spec.Selector.MatchLabels), nil
}

func checkTemporalEnv(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == "TEMPORAL_ADDRESS" {
			if _, _, err := net.SplitHostPort(e.Value); err != nil {
				t.Errorf("%s: TEMPORAL_ADDRESS %q is not host:port", name, e.Value)
			}
			return
		}
	}
	t.Errorf("%s has no TEMPORAL_ADDRESS", name)
}

// The probes and the metrics Service reach the port the settings serve
// /metrics on.
func TestKubernetesMetrics(t *testing.T) {
	b := loadKubeBase(t)
	d := workerDeployment(t, b)
	c := d.Spec.Template.Spec.Containers[0]
	_, port, err := net.SplitHostPort(b.settings.Worker.MetricsAddress)
	if err != nil {
		t.Fatalf("worker.metrics_address %q: %v", b.settings.Worker.MetricsAddress, err)
	}
	want, _ := strconv.Atoi(port)
	var portName string
	for _, p := range c.Ports {
		if int(p.ContainerPort) == want {
			portName = p.Name
		}
	}
	if portName == "" {
		t.Fatalf("the worker container does not expose worker.metrics_address port %d", want)
	}
	for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != "/metrics" || probe.HTTPGet.Port.String() != portName {
			t.Errorf("%s probe does not GET /metrics on port %s: %+v", name, portName, probe)
		}
	}
	svcs := objectsOf[*corev1.Service](b)
	if len(svcs) != 1 {
		t.Fatalf("want one Service (metrics), have %d", len(svcs))
	}
	svc := svcs[0]
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service %s does not select the workers", svc.Name)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != portName {
		t.Errorf("Service %s does not target port %s: %+v", svc.Name, portName, svc.Spec.Ports)
	}
}

// Every config file the settings name, and the settings themselves, are
// mounted read-only from a Secret or the settings ConfigMap, in the
// workers and the starter; the starter Job runs a real starter command.
func TestKubernetesConfigMountsReadOnly(t *testing.T) {
	b := loadKubeBase(t)
	for name, spec := range podSpecs(b) {
		c := spec.Containers[0]
		args := slices.Concat(c.Command[min(len(c.Command), 1):], c.Args)
		settingsPath := flagValue(t, args, "-c")
		files := slices.Concat([]string{settingsPath}, b.settings.Synapse.Config, b.settings.MAS.Config)
		for _, f := range files {
			m, vol, ok := kubeMountFor(spec, c, f)
			switch {
			case !ok:
				t.Errorf("%s: %s is not mounted", name, f)
			case !m.ReadOnly:
				t.Errorf("%s: %s is mounted writable (%s)", name, f, m.Name)
			case vol.Secret == nil && vol.ConfigMap == nil:
				t.Errorf("%s: %s comes from neither a Secret nor a ConfigMap", name, f)
			}
		}
		if m, vol, ok := kubeMountFor(spec, c, settingsPath); ok && (vol.ConfigMap == nil || vol.ConfigMap.Name != "masflow-settings") {
			t.Errorf("%s: the settings come from %s, not the masflow-settings ConfigMap", name, m.Name)
		}
		if strings.HasPrefix(name, "Job/") {
			if len(c.Command) != 1 || c.Command[0] != "masflow-starter" {
				t.Errorf("%s runs %q, want masflow-starter", name, c.Command)
			}
			checkStarterArgs(t, name, c.Args)
			checkTemporalEnv(t, name, c)
		}
	}
}

// kubeMountFor finds the deepest mount of c holding path, and its volume.
func kubeMountFor(spec corev1.PodSpec, c corev1.Container, path string) (corev1.VolumeMount, corev1.Volume, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		if !found || len(m.MountPath) > len(best.MountPath) {
			best, found = m, true
		}
	}
	for _, v := range spec.Volumes {
		if found && v.Name == best.Name {
			return best, v, true
		}
	}
	return best, corev1.Volume{}, false
}

// The base builds with kustomize when kubectl is installed (generated
// names resolved, namespace applied), and its output decodes too.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed: kustomize build not run (the other tests decode each file)")
		return
	}
	out, err := exec.Command(kubectl, "kustomize", kubeDir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", kubeDir, err)
	}
	objs := decodeManifests(t, "kustomize output", bytes.NewReader(out))
	k := loadKustomization(t)
	var generated string
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok && strings.HasPrefix(cm.Name, "masflow-settings-") {
			generated = cm.Name
			if cm.Namespace != k.Namespace {
				t.Errorf("ConfigMap %s in namespace %q, want %q", cm.Name, cm.Namespace, k.Namespace)
			}
		}
	}
	if generated == "" {
		t.Fatal("kustomize generated no masflow-settings ConfigMap")
	}
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			if !slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
				return v.ConfigMap != nil && v.ConfigMap.Name == generated
			}) {
				t.Errorf("Deployment %s does not mount the generated %s", d.Name, generated)
			}
		}
	}
}
