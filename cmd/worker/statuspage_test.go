package main_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sqlworker/worker/internal/web"
	"github.com/sqlworker/worker/internal/workertest"
)

// statusPageConfig has a job for each state the page shows: quiet (enabled,
// never run), report (succeeds), broken (fails), slow (runs for 20 s when
// asked) and off (disabled).
var statusPageConfig = workertest.BuiltinsOff + `
jobs:
  - {name: quiet, schedule: "@yearly", sql: "SELECT 1"}
  - {name: report, schedule: "@yearly", sql: "SELECT 1"}
  - {name: broken, schedule: "@yearly", sql: "SELECT * FROM no_such_table"}
  - name: slow
    schedule: "@yearly"
    timeout: 20s
    sql: |
      WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000)
      SELECT count(*) FROM c;
  - {name: off, schedule: "@hourly", sql: "SELECT 1", enabled: false}
`

// browser starts headless Chromium (Debian's package) whose every request
// carries header, with the page's script execution off, so that the page
// is proven to work without JavaScript, and returns its context. As root
// it runs without the sandbox, which Chromium refuses to start as root
// otherwise.
func browser(t *testing.T, header http.Header) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium: %v (Debian's chromium package; .ci/run installs it)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	headers := network.Headers{}
	for k := range header {
		headers[k] = header.Get(k)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("cannot start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers}); err != nil {
		t.Fatalf("chromium: cannot set the headers: %v", err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("chromium: cannot turn scripts off: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(`data:text/html,<title>off</title><script>document.title="on"</script>`)); err != nil {
		t.Fatal(err)
	}
	if title, err := chromedp.Run(ctx, chromedp.Title()); err != nil || title != "off" {
		t.Fatalf("chromium with scripts off: a page's script set the title to %q (%v), want it left %q", title, err, "off")
	}
	return ctx
}

// shots is where the test's screenshots go: $WORKER_SCREENSHOTS when set
// (to keep them), the test's temporary directory otherwise.
func shots(t *testing.T) string {
	dir := os.Getenv("WORKER_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the element sel (the whole page for "") as dir/name.png,
// and checks that it is a PNG with something in it.
func screenshot(t *testing.T, ctx context.Context, dir, name, sel string) {
	t.Helper()
	action := chromedp.FullScreenshot(100) // 100: PNG
	if sel != "" {
		action = chromedp.Screenshot(chromedp.CSS(sel))
	}
	b, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s: not a PNG: %v", name, err)
	}
	if r := img.Bounds(); r.Dx() < 100 || r.Dy() < 20 {
		t.Fatalf("screenshot %s: got %dx%d, want at least 100x20", name, r.Dx(), r.Dy())
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %s (%d bytes)", name, path, len(b))
}

// statusPage drives the status page of one worker in a browser.
type statusPage struct {
	t   *testing.T
	ctx context.Context
	w   *workertest.Worker
}

// open loads /jobs and returns the state shown for job.
func (p *statusPage) open(job string) string {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, chromedp.Navigate(p.w.URL(web.PagePath))); err != nil {
		p.t.Fatalf("GET /jobs: %v", err)
	}
	return p.state(job)
}

// state returns the state the page shows for job.
func (p *statusPage) state(job string) string {
	p.t.Helper()
	st, err := chromedp.Run(p.ctx, chromedp.AttributeValue(chromedp.CSS("#job-"+job), "data-state"))
	if err != nil || !st.Exists {
		p.t.Fatalf("/jobs: the state of job %s: %v (found %v)", job, err, st.Exists)
	}
	return st.Value
}

// click loads /jobs, clicks job's button value (run, pause or resume),
// typing reason first for a pause, and returns the notice of the page it
// lands on and the state it shows for job.
func (p *statusPage) click(job, value, reason string) (notice, state string) {
	p.t.Helper()
	p.open(job)
	row := "#job-" + job
	if reason != "" {
		if err := chromedp.Do(p.ctx, chromedp.SendKeys(chromedp.CSS(row+` input[name=reason]`), reason)); err != nil {
			p.t.Fatalf("%s %s: typing the reason: %v", value, job, err)
		}
	}
	// The form posts, and the answer redirects back to /jobs: wait for
	// that page's load, subscribed to before the click.
	click := chromedp.Click(chromedp.CSS(row + ` button[value=` + value + `]`))
	if _, err := chromedp.Run(p.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, click)); err != nil {
		p.t.Fatalf("%s %s: %v", value, job, err)
	}
	notice, err := chromedp.Run(p.ctx, chromedp.Text(chromedp.CSS("#notice")))
	if err != nil {
		p.t.Fatalf("%s %s: the notice: %v", value, job, err)
	}
	return notice, p.state(job)
}

// Ensure the status page renders in headless Chromium, behind basic auth,
// with each state a job can be in (enabled and idle, succeeded, failed,
// paused, running, disabled), a screenshot of each, and that its Run now,
// Pause and Resume buttons work without script against the built binary.
func TestStatusPage(t *testing.T) {
	const user, password = "admin", "correct horse battery staple"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, []byte("basic_auth_users:\n  "+user+": "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := MustStartWorker(t, statusPageConfig, "--web.config.file", webConfig, "--web.enable-admin-api")
	if code := w.Status(web.PagePath); code != http.StatusUnauthorized {
		t.Fatalf("GET /jobs without credentials: got %d, want 401", code)
	}
	auth := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
	p := &statusPage{t: t, ctx: browser(t, auth), w: w}
	dir := shots(t)

	for job, want := range map[string]string{"quiet": "idle", "off": "disabled"} {
		if got := p.open(job); got != want {
			t.Errorf("%s: state %q, want %q", job, got, want)
		}
		screenshot(t, p.ctx, dir, want, "#job-"+job)
	}
	steps := []struct {
		job, button, reason, wantNotice, wantState, shot string
	}{
		{"report", "run", "", "ran: success", "idle", "succeeded"},
		{"broken", "run", "", "ran: failure", "idle", "failed"},
		{"report", "pause", "nightly <import>", "paused", "paused", "paused"},
		{"report", "run", "", "run: not run: the job is paused", "paused", ""},
		{"report", "resume", "", "resumed", "idle", ""},
		{"slow", "run", "", "started; still running", "running", "running"},
	}
	for _, s := range steps {
		notice, state := p.click(s.job, s.button, s.reason)
		if want := s.job + ": " + s.wantNotice; notice != want || state != s.wantState {
			t.Errorf("%s %s: got notice %q, state %q; want %q, %q", s.button, s.job, notice, state, want, s.wantState)
		}
		if s.shot != "" {
			screenshot(t, p.ctx, dir, s.shot, "#job-"+s.job)
		}
		if s.button == "pause" {
			checkPaused(t, w, auth, s.job, s.reason)
		}
	}
	screenshot(t, p.ctx, dir, "page", "")
	checkPaused(t, w, auth, "report", "")
	html, err := chromedp.Run(p.ctx, chromedp.OuterHTML(chromedp.CSS("#job-broken")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html, "no such table: no_such_table") || !strings.Contains(html, `class="r-failure"`) {
		t.Errorf("broken's row: want its failure and error in the runs\n%s", html)
	}
}

// checkPaused checks through the admin API that job is paused with reason,
// or not paused for "".
func checkPaused(t *testing.T, w *workertest.Worker, auth http.Header, job, reason string) {
	t.Helper()
	req, err := http.NewRequest("GET", w.URL(web.AdminJobsPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = auth.Clone()
	resp, err := w.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Jobs []web.JobStatus }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, j := range list.Jobs {
		if j.Name == job && (j.Paused != (reason != "") || j.PausedReason != reason) {
			t.Errorf("admin API: %s: got paused %v reason %q, want paused %v reason %q", job, j.Paused, j.PausedReason, reason != "", reason)
		}
	}
}
