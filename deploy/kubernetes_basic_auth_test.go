package deploy_test

import (
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sqlworker/worker/internal/workertest"
)

// TestKubernetes_BasicAuthOverlay renders deploy/kubernetes-basic-auth,
// strictly decodes it, and runs the built worker under the rendered web
// config, with a test certificate in place of the Secret's. Every probe,
// sent as the kubelet sends it (its scheme, path and headers, no
// certificate check), must answer 200, and 401 without its headers; the
// ServiceMonitor's credentials, read from the Secret it names, must scrape
// its path.
func TestKubernetes_BasicAuthOverlay(t *testing.T) {
	objs := mustDecodeManifests(t, "deploy", "kubernetes-basic-auth")
	ss := findObject[*appsv1.StatefulSet](t, objs, "worker")
	if len(ss.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("rendered: StatefulSet with %d containers, want 1", len(ss.Spec.Template.Spec.Containers))
	}
	c := ss.Spec.Template.Spec.Containers[0]
	checkFlags(t, "basic-auth statefulset args", c.Args)
	probes := containerProbes(t, c)
	for name, p := range probes {
		if p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v: want HTTPS on port metrics", name, p.HTTPGet)
		}
	}
	web, wc := mountedWebConfig(t, objs, ss)
	if len(wc.Users) == 0 {
		t.Fatalf("web config has no basic_auth_users:\n%s", web)
	}

	sm := findObject[*monitoringv1.ServiceMonitor](t, objs, "worker")
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].BasicAuth == nil {
		t.Fatalf("ServiceMonitor endpoints %+v: want one, with basicAuth", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	secretKey := func(sel corev1.SecretKeySelector) string {
		v, ok := findObject[*corev1.Secret](t, objs, sel.Name).Data[sel.Key]
		if !ok {
			t.Fatalf("ServiceMonitor basicAuth: Secret %s has no key %q", sel.Name, sel.Key)
		}
		return string(v)
	}
	scrapeUser, scrapePassword := secretKey(ep.BasicAuth.Username), secretKey(ep.BasicAuth.Password)

	// The worker, under the rendered web config with a test certificate.
	dir := t.TempDir()
	certFile, keyFile, _ := workertest.MustCert(t, dir)
	web = strings.NewReplacer(wc.TLS.CertFile, certFile, wc.TLS.KeyFile, keyFile).Replace(web)
	webFile := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webFile, []byte(web), 0o600); err != nil {
		t.Fatal(err)
	}
	// The kubelet checks no certificate of an HTTPS probe.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet does
		DisableKeepAlives: true,
	}}
	w := workertest.Start(t, workertest.Options{
		Bin: workertest.BuildOnce(t, ""), Args: []string{"--web.config.file", webFile},
		Client: client, Scheme: "https",
	})

	get := func(path string, header http.Header) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, w.URL(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, p := range probes {
		h := http.Header{}
		for _, ph := range p.HTTPGet.HTTPHeaders {
			h.Add(ph.Name, ph.Value)
		}
		if got, want := get(p.HTTPGet.Path, h), http.StatusOK; got != want {
			t.Errorf("%s probe GET %s with its headers: got %d, want %d", name, p.HTTPGet.Path, got, want)
		}
		if got, want := get(p.HTTPGet.Path, http.Header{}), http.StatusUnauthorized; got != want {
			t.Errorf("%s probe GET %s without its headers: got %d, want %d", name, p.HTTPGet.Path, got, want)
		}
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(scrapeUser+":"+scrapePassword))
	if got, want := get(ep.Path, http.Header{"Authorization": {basic}}), http.StatusOK; got != want {
		t.Errorf("ServiceMonitor GET %s as %q: got %d, want %d", ep.Path, scrapeUser, got, want)
	}
}
