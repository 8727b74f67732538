package deploy_test

import (
	"bytes"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// TestKubernetes_TLSOverlay renders deploy/kubernetes-tls with kubectl
// kustomize and checks that the worker gets its web config and
// certificate, that every probe speaks HTTPS to the same paths, and that
// the ServiceMonitor scrapes https.
func TestKubernetes_TLSOverlay(t *testing.T) {
	kubectl := tool(t, "KUBECTL", "kubectl")
	cmd := exec.Command(kubectl, "kustomize", repoPath(t, "deploy", "kubernetes-tls"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/kubernetes-tls: %v\n%s", err, stderr.String())
	}
	type probe struct {
		HTTPGet struct {
			Path   string `yaml:"path"`
			Port   string `yaml:"port"`
			Scheme string `yaml:"scheme"`
		} `yaml:"httpGet"`
	}
	type doc struct {
		Kind     string            `yaml:"kind"`
		Metadata k8sMeta           `yaml:"metadata"`
		Data     map[string]string `yaml:"data"`
		Spec     struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args           []string `yaml:"args"`
						LivenessProbe  probe    `yaml:"livenessProbe"`
						ReadinessProbe probe    `yaml:"readinessProbe"`
						StartupProbe   probe    `yaml:"startupProbe"`
						VolumeMounts   []struct {
							Name      string `yaml:"name"`
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					} `yaml:"containers"`
					Volumes []struct {
						Name      string `yaml:"name"`
						ConfigMap *struct {
							Name string `yaml:"name"`
						} `yaml:"configMap"`
						Secret *struct {
							SecretName string `yaml:"secretName"`
						} `yaml:"secret"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
			Endpoints []struct {
				Port   string `yaml:"port"`
				Scheme string `yaml:"scheme"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	docs := map[string]doc{}
	configMaps := map[string]doc{}
	for _, part := range strings.Split(string(out), "\n---\n") {
		var d doc
		if err := yaml.Unmarshal([]byte(part), &d); err != nil {
			t.Fatalf("rendered manifest: %v\n%s", err, part)
		}
		if d.Kind == "ConfigMap" {
			configMaps[d.Metadata.Name] = d
		}
		docs[d.Kind] = d
	}
	ss, ok := docs["StatefulSet"]
	if !ok || len(ss.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("rendered: no StatefulSet with one container in\n%s", out)
	}
	c := ss.Spec.Template.Spec.Containers[0]
	checkFlags(t, "tls statefulset args", c.Args)
	for name, p := range map[string]probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p.HTTPGet.Scheme != "HTTPS" || p.HTTPGet.Port != "metrics" || p.HTTPGet.Path == "" {
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
	web, ok := configMaps[cm].Data[path.Base(webConfig)]
	if !ok {
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
	if sm := docs["ServiceMonitor"]; len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Scheme != "https" {
		t.Errorf("ServiceMonitor endpoints %+v: want one, scheme https", sm.Spec.Endpoints)
	}
}
