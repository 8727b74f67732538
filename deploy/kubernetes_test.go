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
			"  go test ./deploy -run TestKubernetes_PrometheusRuleMatchesAlerts -update")
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

type k8sMeta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type statefulSet struct {
	Kind     string  `yaml:"kind"`
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		ServiceName string `yaml:"serviceName"`
		Replicas    int    `yaml:"replicas"`
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string   `yaml:"name"`
					Image string   `yaml:"image"`
					Args  []string `yaml:"args"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					LivenessProbe   k8sProbe `yaml:"livenessProbe"`
					ReadinessProbe  k8sProbe `yaml:"readinessProbe"`
					SecurityContext struct {
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
						ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata k8sMeta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
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

// TestKubernetes_Manifests checks the StatefulSet, its ConfigMap, Service
// and ServiceMonitor against each other, the worker's flags and config,
// and issue 4's requirements.
func TestKubernetes_Manifests(t *testing.T) {
	var ss statefulSet
	loadYAML(t, &ss, "deploy", "kubernetes", "statefulset.yaml")
	var cm struct {
		Metadata k8sMeta           `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
	}
	loadYAML(t, &cm, "deploy", "kubernetes", "configmap.yaml")
	var svc struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			ClusterIP string            `yaml:"clusterIP"`
			Selector  map[string]string `yaml:"selector"`
			Ports     []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	loadYAML(t, &svc, "deploy", "kubernetes", "service.yaml")
	var sm struct {
		Kind     string  `yaml:"kind"`
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port        string `yaml:"port"`
				Path        string `yaml:"path"`
				HonorLabels bool   `yaml:"honorLabels"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	loadYAML(t, &sm, "deploy", "kubernetes", "servicemonitor.yaml")

	s := ss.Spec
	if s.Replicas != 1 {
		t.Errorf("replicas = %d, want 1 (one writer per SQLite file)", s.Replicas)
	}
	if !subset(s.Selector.MatchLabels, s.Template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", s.Selector.MatchLabels, s.Template.Metadata.Labels)
	}
	if s.ServiceName != svc.Metadata.Name {
		t.Errorf("serviceName %q, want the Service %q", s.ServiceName, svc.Metadata.Name)
	}
	ps := s.Template.Spec
	if !ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", ps.SecurityContext)
	}
	if ps.TerminationGracePeriodSeconds < 40 {
		t.Errorf("terminationGracePeriodSeconds = %d, want above shutdown_grace (30s) plus a margin", ps.TerminationGracePeriodSeconds)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	if !c.SecurityContext.ReadOnlyRootFilesystem || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem and no privilege escalation", c.SecurityContext)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes liveness %q readiness %q, want /healthz and /readyz", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	checkFlags(t, "statefulset args", c.Args)
	listen, ok := flagValue(c.Args, "web.listen-address")
	if !ok {
		t.Fatal("statefulset args: no --web.listen-address (the default listens on 127.0.0.1 only)")
	}
	port := portOf(t, listen)
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || itoa(c.Ports[0].ContainerPort) != port {
		t.Errorf("container ports %+v, want one named metrics on %s", c.Ports, port)
	}
	for _, p := range []k8sProbe{c.LivenessProbe, c.ReadinessProbe} {
		if p.HTTPGet.Port != "metrics" {
			t.Errorf("probe port %q, want metrics", p.HTTPGet.Port)
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
		if v.Name == vol && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
			cmOK = true
		}
	}
	doc, ok := cm.Data[file]
	if !cmOK || !ok {
		t.Fatalf("--config.file=%s: not a key of the mounted ConfigMap %s", cfgFile, cm.Metadata.Name)
	}
	checkConfig(t, "configmap "+file, []byte(doc))
	if len(s.VolumeClaimTemplates) != 1 || mounts[dbDir(t, []byte(doc))] != s.VolumeClaimTemplates[0].Metadata.Name {
		t.Errorf("database directory %s is not on the volume claim template", dbDir(t, []byte(doc)))
	}

	// Service and ServiceMonitor.
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("Service clusterIP %q, want None (the StatefulSet's headless governing Service)", svc.Spec.ClusterIP)
	}
	if !subset(svc.Spec.Selector, s.Template.Metadata.Labels) {
		t.Errorf("Service selector %v does not match the pod labels", svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != "metrics" || itoa(svc.Spec.Ports[0].Port) != port {
		t.Errorf("Service ports %+v, want %s -> metrics", svc.Spec.Ports, port)
	}
	if sm.Kind != "ServiceMonitor" || !subset(sm.Spec.Selector.MatchLabels, svc.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v does not match the Service labels %v", sm.Spec.Selector.MatchLabels, svc.Metadata.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].HonorLabels {
		t.Errorf("ServiceMonitor endpoints %+v, want the Service port %q without honorLabels", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
	}
	// The job label is the Service's name: the rules select job="worker".
	if svc.Metadata.Name != "worker" {
		t.Errorf("Service name %q: the job label would not be \"worker\", which the rules select", svc.Metadata.Name)
	}
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
