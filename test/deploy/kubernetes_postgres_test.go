package deploy_test

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// TestKubernetesPostgres_Manifests renders deploy/kubernetes-postgres,
// strictly decodes every object, and checks PostgreSQL mode: a Deployment
// of three replicas in place of the StatefulSet, no volume for SQLite, the
// URL in the ConfigMap's config without a password, the password from a
// Secret mounted as a file, the replica id from the pod name, the probes,
// and a PodDisruptionBudget that lets a drain take one replica at a time.
func TestKubernetesPostgres_Manifests(t *testing.T) {
	objs := mustDecodeManifests(t, "deploy", "kubernetes-postgres")
	for _, o := range objs {
		if _, ok := o.(*appsv1.StatefulSet); ok {
			t.Errorf("StatefulSet %s rendered: PostgreSQL mode runs a Deployment instead", o.GetName())
		}
		if _, ok := o.(*corev1.PersistentVolumeClaim); ok {
			t.Errorf("PersistentVolumeClaim %s rendered: PostgreSQL mode keeps no file", o.GetName())
		}
	}
	dep := findObject[*appsv1.Deployment](t, objs, "worker")
	cm := findObject[*corev1.ConfigMap](t, objs, "worker-config")
	svc := findObject[*corev1.Service](t, objs, "worker")
	pdb := findObject[*policyv1.PodDisruptionBudget](t, objs, "worker")
	sm := findObject[*monitoringv1.ServiceMonitor](t, objs, "worker")
	findObject[*monitoringv1.PrometheusRule](t, objs, "worker")
	findObject[*corev1.Namespace](t, objs, "worker")

	s := dep.Spec
	if s.Replicas == nil || *s.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", s.Replicas)
	}
	if s.Selector == nil || !subset(s.Selector.MatchLabels, s.Template.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", s.Selector, s.Template.Labels)
	}
	if s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("strategy %q, want RollingUpdate (replicas may overlap: the claims keep each tick to one)", s.Strategy.Type)
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
		t.Errorf("probes liveness %q readiness %q, want /healthz and /readyz (a replica whose server is down stays alive and reconnects)", probes["liveness"].HTTPGet.Path, probes["readiness"].HTTPGet.Path)
	}
	for name, p := range probes {
		if p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe port %q, want metrics", name, p.HTTPGet.Port.String())
		}
	}
	checkFlags(t, "deployment args", c.Args)
	listen, ok := flagValue(c.Args, "web.listen-address")
	if !ok {
		t.Fatal("deployment args: no --web.listen-address")
	}
	port := portOf(t, listen)
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("container ports %+v, want one named metrics on %s", c.Ports, port)
	}
	for _, a := range c.Args {
		for _, f := range []string{"--db.url", "--db.password-file", "--db.path"} {
			if strings.HasPrefix(a, f) {
				t.Errorf("deployment args: %s: the URL and password file are in the ConfigMap's config", a)
			}
		}
	}

	// The replica id is the pod's name, from the downward API.
	id, ok := flagValue(c.Args, "db.replica-id")
	if !ok {
		t.Fatal("deployment args: no --db.replica-id (the default, hostname-pid, is the pod name and pid 1 in every pod of a restart)")
	}
	envName, ok := strings.CutPrefix(id, "$(")
	envName = strings.TrimSuffix(envName, ")")
	var fromPod bool
	for _, e := range c.Env {
		if ok && e.Name == envName && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			fromPod = true
		}
	}
	if !fromPod {
		t.Errorf("--db.replica-id=%s: want $(VAR) of an env var from fieldRef metadata.name", id)
	}

	// Volumes: the ConfigMap and the Secret, nothing for a database file.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
		if v.ConfigMap == nil && v.Secret == nil {
			t.Errorf("volume %s: only the ConfigMap and the password Secret belong here", v.Name)
		}
	}
	cfgFile, _ := flagValue(c.Args, "config.file")
	dir, file := filepath.Split(cfgFile)
	if v := vols[mounts[filepath.Clean(dir)]]; v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Fatalf("--config.file=%s: not in the mounted ConfigMap %s", cfgFile, cm.Name)
	}
	doc, ok := cm.Data[file]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Name, file)
	}
	var cfg struct {
		Database struct {
			Path         string `yaml:"path"`
			URL          string `yaml:"url"`
			PasswordFile string `yaml:"password_file"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Database.Path != "" {
		t.Errorf("config database.path %q: refused beside database.url", cfg.Database.Path)
	}
	u, err := url.Parse(cfg.Database.URL)
	if err != nil || u.Scheme != "postgres" {
		t.Fatalf("config database.url %q: want a postgres:// URL (%v)", cfg.Database.URL, err)
	}
	if _, has := u.User.Password(); has {
		t.Errorf("config database.url has a password: put it in the Secret")
	}
	pwDir, pwFile := filepath.Split(cfg.Database.PasswordFile)
	sv := vols[mounts[filepath.Clean(pwDir)]]
	if sv.Secret == nil {
		t.Fatalf("database.password_file %s: not in a mounted Secret", cfg.Database.PasswordFile)
	}
	keyOK := false
	for _, it := range sv.Secret.Items {
		if it.Path == pwFile && it.Key != "" {
			keyOK = true
		}
	}
	if !keyOK {
		t.Errorf("Secret volume %s: no item with path %s", sv.Name, pwFile)
	}
	if m := sv.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
		t.Errorf("Secret volume %s defaultMode %v: want no access for others (fsGroup gives the worker's group read)", sv.Name, m)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s from a Secret: the password is a file, not the environment", e.Name)
		}
	}
	// The config checks, with a password file standing in for the Secret's.
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkConfigWith(t, "configmap "+file, []byte(doc), "--db.password-file="+pw, "--db.replica-id=worker-0")

	// Service, ServiceMonitor and PodDisruptionBudget select the pods.
	if !subset(svc.Spec.Selector, s.Template.Labels) {
		t.Errorf("Service selector %v does not match the pod labels", svc.Spec.Selector)
	}
	if !subset(sm.Spec.Selector.MatchLabels, svc.Labels) || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" {
		t.Errorf("ServiceMonitor %+v: want the Service's metrics port", sm.Spec)
	}
	if pdb.Spec.Selector == nil || !subset(pdb.Spec.Selector.MatchLabels, s.Template.Labels) {
		t.Errorf("PodDisruptionBudget selector %v does not match the pod labels", pdb.Spec.Selector)
	}
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, minAvailable %v: want maxUnavailable 1", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
}

// TestKubernetesPostgres_Kustomization checks that the overlay builds on
// deploy/kubernetes and uses every manifest of its directory.
func TestKubernetesPostgres_Kustomization(t *testing.T) {
	var k struct {
		Resources []string `yaml:"resources"`
		Patches   []struct {
			Path string `yaml:"path"`
		} `yaml:"patches"`
	}
	loadYAML(t, &k, "deploy", "kubernetes-postgres", "kustomization.yaml")
	files, err := filepath.Glob(repoPath(t, "deploy", "kubernetes-postgres", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	base := false
	for _, r := range k.Resources {
		if r == "../kubernetes" {
			base = true
			continue
		}
		got = append(got, r)
	}
	for _, p := range k.Patches {
		if p.Path != "" {
			got = append(got, p.Path)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !base {
		t.Errorf("resources %v: want the base ../kubernetes", k.Resources)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kustomization resources and patches %v, want %v", got, want)
	}
}
