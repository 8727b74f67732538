package deploy_test

import (
	"path"
	"testing"

	"github.com/goccy/go-yaml"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestKubernetes_TLSOverlay renders deploy/kubernetes-tls with kubectl
// kustomize, strictly decodes every object, and checks that the worker
// gets its web config and certificate, that every probe speaks HTTPS to
// the same paths, and that the ServiceMonitor scrapes https.
func TestKubernetes_TLSOverlay(t *testing.T) {
	objs := mustDecodeManifests(t, "deploy", "kubernetes-tls")
	ss := findObject[*appsv1.StatefulSet](t, objs, "worker")
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm
		}
	}
	if len(ss.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("rendered: StatefulSet with %d containers, want 1", len(ss.Spec.Template.Spec.Containers))
	}
	c := ss.Spec.Template.Spec.Containers[0]
	checkFlags(t, "tls statefulset args", c.Args)
	for name, p := range containerProbes(t, c) {
		if p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "metrics" || p.HTTPGet.Path == "" {
			t.Errorf("%s probe %+v: want HTTPS on port metrics", name, p.HTTPGet)
		}
	}
	webConfig, ok := flagValue(c.Args, "web.config.file")
	if !ok {
		t.Fatalf("tls statefulset args %v: no --web.config.file", c.Args)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	var cm, secret, secretVol string
	for _, v := range ss.Spec.Template.Spec.Volumes {
		switch {
		case v.Name == mounts[path.Dir(webConfig)] && v.ConfigMap != nil:
			cm = v.ConfigMap.Name
		case v.Secret != nil:
			secret, secretVol = v.Secret.SecretName, v.Name
		}
	}
	var web string
	if m := configMaps[cm]; m != nil {
		web, ok = m.Data[path.Base(webConfig)]
	}
	if web == "" || !ok {
		t.Fatalf("--web.config.file=%s: not a key of a mounted ConfigMap (volume %q)", webConfig, mounts[path.Dir(webConfig)])
	}
	var wc struct {
		TLS struct {
			CertFile string `yaml:"cert_file"`
			KeyFile  string `yaml:"key_file"`
		} `yaml:"tls_server_config"`
	}
	if err := yaml.Unmarshal([]byte(web), &wc); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{wc.TLS.CertFile, wc.TLS.KeyFile} {
		if f == "" || secret == "" || mounts[path.Dir(f)] != secretVol {
			t.Errorf("web config file %q: not on the mounted Secret %q", f, secret)
		}
	}
	sm := findObject[*monitoringv1.ServiceMonitor](t, objs, "worker")
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Scheme.String() != "https" {
		t.Errorf("ServiceMonitor endpoints %+v: want one, scheme https", sm.Spec.Endpoints)
	}
}
