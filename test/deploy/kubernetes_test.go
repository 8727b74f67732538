package deploy_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "regenerate deploy/kubernetes/prometheusrule.yaml from deploy/prometheus/alerts.yml")

// TestKubernetes_PrometheusRuleMatchesAlerts checks that the PrometheusRule
// holds exactly the groups of alerts.yml. With -update it rewrites the
// PrometheusRule from alerts.yml.
func TestKubernetes_PrometheusRuleMatchesAlerts(t *testing.T) {
	rulePath := repoPath(t, "deploy", "kubernetes", "prometheusrule.yaml")
	alertsText := readFile(t, "deploy", "prometheus", "alerts.yml")
	if *update {
		cur := readFile(t, "deploy", "kubernetes", "prometheusrule.yaml")
		i := bytes.Index(cur, []byte("\nspec:\n"))
		j := bytes.Index(alertsText, []byte("\ngroups:\n"))
		if i < 0 || j < 0 {
			t.Fatal("-update: no spec: in prometheusrule.yaml or no groups: in alerts.yml")
		}
		var b bytes.Buffer
		b.Write(cur[:i+len("\nspec:\n")])
		for _, line := range strings.Split(strings.TrimRight(string(alertsText[j+1:]), "\n"), "\n") {
			if line != "" {
				b.WriteString("  " + line)
			}
			b.WriteString("\n")
		}
		if err := os.WriteFile(rulePath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var alerts, pr map[string]any
	if err := yaml.Unmarshal(alertsText, &alerts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rulePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if got, want := pr["kind"], "PrometheusRule"; got != want {
		t.Errorf("kind = %v, want %v", got, want)
	}
	if got, want := pr["apiVersion"], "monitoring.coreos.com/v1"; got != want {
		t.Errorf("apiVersion = %v, want %v", got, want)
	}
	spec, _ := pr["spec"].(map[string]any)
	if len(alerts) != 1 || len(spec) != 1 {
		t.Errorf("alerts.yml keys %v, PrometheusRule spec keys %v: want only groups", keys(alerts), keys(spec))
	}
	if !reflect.DeepEqual(spec["groups"], alerts["groups"]) {
		t.Errorf("deploy/kubernetes/prometheusrule.yaml spec.groups differs from deploy/prometheus/alerts.yml; run\n" +
			"  go test ./test/deploy -run TestKubernetes_PrometheusRuleMatchesAlerts -update")
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func loadYAML(t testing.TB, v any, elem ...string) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, elem...), v); err != nil {
		t.Fatalf("%s: %v", filepath.Join(elem...), err)
	}
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetes_Manifests renders deploy/kubernetes, strictly decodes every
// object into its k8s.io/api or prometheus-operator type, and checks the
// StatefulSet, its ConfigMap, Service and ServiceMonitor against each other,
// the worker's flags and config, and issue 4's requirements.
func TestKubernetes_Manifests(t *testing.T) {
	objs := mustDecodeManifests(t, "deploy", "kubernetes")
	ss := findObject[*appsv1.StatefulSet](t, objs, "worker")
	cm := findObject[*corev1.ConfigMap](t, objs, "worker-config")
	svc := findObject[*corev1.Service](t, objs, "worker")
	sm := findObject[*monitoringv1.ServiceMonitor](t, objs, "worker")
	findObject[*monitoringv1.PrometheusRule](t, objs, "worker")
	findObject[*corev1.Namespace](t, objs, "worker")

	s := ss.Spec
	if s.Replicas == nil || *s.Replicas != 1 {
		t.Errorf("replicas = %v, want 1 (one writer per SQLite file)", s.Replicas)
	}
	if s.Selector == nil || !subset(s.Selector.MatchLabels, s.Template.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", s.Selector, s.Template.Labels)
	}
	if s.ServiceName != svc.Name {
		t.Errorf("serviceName %q, want the Service %q", s.ServiceName, svc.Name)
	}
	ps := s.Template.Spec
	if psc := ps.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
	}
	if g := ps.TerminationGracePeriodSeconds; g == nil || *g < 40 {
		t.Errorf("terminationGracePeriodSeconds = %v, want above shutdown_grace (30s) plus a margin", g)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if csc := c.SecurityContext; csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem and no privilege escalation", csc)
	}
	probes := containerProbes(t, c)
	if probes["liveness"].HTTPGet.Path != "/healthz" || probes["readiness"].HTTPGet.Path != "/readyz" {
		t.Errorf("probes liveness %q readiness %q, want /healthz and /readyz", probes["liveness"].HTTPGet.Path, probes["readiness"].HTTPGet.Path)
	}
	checkFlags(t, "statefulset args", c.Args)
	listen, ok := flagValue(c.Args, "web.listen-address")
	if !ok {
		t.Fatal("statefulset args: no --web.listen-address (the default listens on 127.0.0.1 only)")
	}
	port := portOf(t, listen)
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("container ports %+v, want one named metrics on %s", c.Ports, port)
	}
	for name, p := range probes {
		if p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe port %q, want metrics", name, p.HTTPGet.Port.String())
		}
	}

	// Mounts: the config file comes from the ConfigMap, the database
	// directory from the volume claim template.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	cfgFile, _ := flagValue(c.Args, "config.file")
	dir, file := filepath.Split(cfgFile)
	vol := mounts[filepath.Clean(dir)]
	cmOK := false
	for _, v := range ps.Volumes {
		if v.Name == vol && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			cmOK = true
		}
	}
	doc, ok := cm.Data[file]
	if !cmOK || !ok {
		t.Fatalf("--config.file=%s: not a key of the mounted ConfigMap %s", cfgFile, cm.Name)
	}
	checkConfig(t, "configmap "+file, []byte(doc))
	if len(s.VolumeClaimTemplates) != 1 || mounts[dbDir(t, []byte(doc))] != s.VolumeClaimTemplates[0].Name {
		t.Errorf("database directory %s is not on the volume claim template", dbDir(t, []byte(doc)))
	}

	// Service and ServiceMonitor.
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("Service clusterIP %q, want None (the StatefulSet's headless governing Service)", svc.Spec.ClusterIP)
	}
	if !subset(svc.Spec.Selector, s.Template.Labels) {
		t.Errorf("Service selector %v does not match the pod labels", svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" || itoa(int(svc.Spec.Ports[0].Port)) != port {
		t.Errorf("Service ports %+v, want %s -> metrics", svc.Spec.Ports, port)
	}
	if !subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not match the Service labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].HonorLabels {
		t.Errorf("ServiceMonitor endpoints %+v, want the Service port %q without honorLabels", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
	// The job label is the Service's name: the rules select job="worker".
	if svc.Name != "worker" {
		t.Errorf("Service name %q: the job label would not be \"worker\", which the rules select", svc.Name)
	}
}

// containerProbes returns a container's liveness, readiness and startup
// probes by name; each must be an httpGet probe.
func containerProbes(t testing.TB, c corev1.Container) map[string]*corev1.Probe {
	t.Helper()
	probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("container %s: %s probe %+v, want an httpGet probe", c.Name, name, p)
		}
	}
	return probes
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestKubernetes_Kustomization checks that kustomization.yaml lists every
// manifest of the directory.
func TestKubernetes_Kustomization(t *testing.T) {
	var k struct {
		Resources []string `yaml:"resources"`
	}
	loadYAML(t, &k, "deploy", "kubernetes", "kustomization.yaml")
	files, err := filepath.Glob(repoPath(t, "deploy", "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kustomization resources %v, want %v", got, want)
	}
}

// TestKubernetes_StrictDecoding proves that the decoder of the manifest
// tests refuses what the API server's strict field validation refuses: each
// case changes one line of the rendered deploy/kubernetes and must fail,
// naming the field.
func TestKubernetes_StrictDecoding(t *testing.T) {
	rendered := string(renderKustomize(t, "deploy", "kubernetes"))
	if _, err := decodeManifests([]byte(rendered)); err != nil {
		t.Fatalf("rendered deploy/kubernetes: %v", err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"misspelt probe port", "            path: /healthz\n", "            path: /healthz\n            prot: metrics\n",
			`unknown field "spec.template.spec.containers[0].livenessProbe.httpGet.prot"`},
		{"duplicate field", "  serviceName: worker\n", "  serviceName: worker\n  serviceName: other\n",
			`"serviceName" already set in map`},
		{"ServiceMonitor", "  - honorLabels: false\n", "  - honorLabels: false\n    honourLabels: false\n",
			`unknown field "spec.endpoints[0].honourLabels"`},
		{"PrometheusRule", "    - alert: WorkerDown\n", "    - alert: WorkerDown\n      severity: critical\n",
			`unknown field "spec.groups[1].rules[0].severity"`},
		{"unknown kind", "kind: ServiceMonitor\n", "kind: ServiceMonitors\n",
			`no kind "ServiceMonitors" is registered`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(rendered, tc.old) < 1 {
				t.Fatalf("rendered deploy/kubernetes has no %q", tc.old)
			}
			_, err := decodeManifests([]byte(strings.Replace(rendered, tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %s", err, tc.want)
			}
		})
	}
}
