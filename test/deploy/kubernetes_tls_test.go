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
	_, wc := mountedWebConfig(t, objs, ss)
	mounts := volumeMounts(c)
	var secret, secretVol string
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secret, secretVol = v.Secret.SecretName, v.Name
		}
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

// webConfig is the part of an exporter-toolkit web config the tests read.
type webConfig struct {
	TLS struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls_server_config"`
	Users map[string]string `yaml:"basic_auth_users"`
}

// mountedWebConfig returns the text of the worker's --web.config.file, which
// must be a key of a ConfigMap mounted in the StatefulSet, and its parse.
func mountedWebConfig(t testing.TB, objs []k8sObject, ss *appsv1.StatefulSet) (string, webConfig) {
	t.Helper()
	c := ss.Spec.Template.Spec.Containers[0]
	file, ok := flagValue(c.Args, "web.config.file")
	if !ok {
		t.Fatalf("statefulset args %v: no --web.config.file", c.Args)
	}
	vol := volumeMounts(c)[path.Dir(file)]
	var text string
	found := false
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.Name == vol && v.ConfigMap != nil {
			text, found = findObject[*corev1.ConfigMap](t, objs, v.ConfigMap.Name).Data[path.Base(file)]
		}
	}
	if !found {
		t.Fatalf("--web.config.file=%s: not a key of a mounted ConfigMap (volume %q)", file, vol)
	}
	var wc webConfig
	if err := yaml.Unmarshal([]byte(text), &wc); err != nil {
		t.Fatalf("--web.config.file=%s: %v", file, err)
	}
	return text, wc
}

// volumeMounts maps a container's mount paths to their volumes.
func volumeMounts(c corev1.Container) map[string]string {
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	return mounts
}
