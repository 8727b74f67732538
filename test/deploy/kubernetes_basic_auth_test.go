package deploy_test

import (
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sqlworker/worker/internal/workertest"
)

// TestKubernetes_BasicAuthOverlay renders deploy/kubernetes-basic-auth with
// the credentials its generator writes, strictly decodes it, and runs the built worker under the rendered web
// config, with a test certificate in place of the Secret's. Every probe,
// sent as the kubelet sends it (its scheme, path and headers, no
// certificate check), must answer 200, and 401 without its headers; the
// ServiceMonitor's credentials, read from the Secret it names, must scrape
// its path.
func TestKubernetes_BasicAuthOverlay(t *testing.T) {
	objs := mustDecodeOverlayWithCredentials(t)
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

// credentialRE matches what a credential in a manifest looks like: a
// bcrypt hash, a Basic header's base64, a password literal.
var credentialRE = regexp.MustCompile(`\$2[aby]\$\d\d\$|Basic [A-Za-z0-9+/]{8,}|password=\S`)

// overlayDirs are the kustomize directories the basic-auth overlay builds on.
var overlayDirs = []string{"kubernetes", "kubernetes-tls", "kubernetes-basic-auth"}

// copyOverlay copies the overlay and its bases, as git has them, into a
// new directory and returns the overlay's copy.
func copyOverlay(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range overlayDirs {
		if err := os.CopyFS(filepath.Join(root, d), os.DirFS(repoPath(t, "deploy", d))); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, "kubernetes-basic-auth")
	for _, f := range []string{"web.yml", "scrape.env", "probe.env"} {
		_ = os.Remove(filepath.Join(dir, f)) // an operator's own, in the work tree
	}
	return dir
}

// mustDecodeOverlayWithCredentials renders a copy of the overlay after its
// credentials generator has run in it, as an operator does.
func mustDecodeOverlayWithCredentials(t *testing.T) []k8sObject {
	t.Helper()
	dir := copyOverlay(t)
	cmd := exec.Command("go", "run", "./deploy/kubernetes-basic-auth/credentials", "-dir", dir)
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("credentials: %v\n%s", err, out)
	}
	objs, err := decodeManifests(renderKustomizeDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Ensure the overlay is fail safe (issue 18): as git has it, with no
// credentials written, it does not render (kubectl apply -k fails naming
// the file), and no password of it is in git; the generator refuses to
// overwrite credentials without -force.
func TestKubernetes_BasicAuthOverlay_FailSafe(t *testing.T) {
	dir := copyOverlay(t)
	cmd := exec.Command(tool(t, "KUBECTL", "kubectl"), "kustomize", dir)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "web.yml") {
		t.Fatalf("kubectl kustomize without credentials: got %v\n%s\nwant a failure naming web.yml", err, out)
	}
	for _, f := range overlayDirs {
		err := filepath.WalkDir(repoPath(t, "deploy", f), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if m := credentialRE.Find(b); m != nil && !strings.HasSuffix(path, ".go") {
				t.Errorf("%s holds %q: credentials must not ship", path, m)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	gen := exec.Command("go", "run", "./deploy/kubernetes-basic-auth/credentials", "-dir", dir)
	gen.Dir = repoRoot(t)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("credentials: %v\n%s", err, out)
	}
	again := exec.Command("go", "run", "./deploy/kubernetes-basic-auth/credentials", "-dir", dir)
	again.Dir = repoRoot(t)
	if out, err := again.CombinedOutput(); err == nil || !strings.Contains(string(out), "exists; -force") {
		t.Errorf("credentials a second time: got %v\n%s\nwant a refusal naming -force", err, out)
	}
}
