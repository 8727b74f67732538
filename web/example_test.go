package web_test

import (
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlworker/worker"
	"github.com/sqlworker/worker/web"
)

// The worker daemon's landing page, exporter-toolkit's, on a Worker's
// handler: give LandingPage as HandlerOptions.LandingPage.
func ExampleLandingPage() {
	w, err := worker.New(worker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	h, err := w.Handler(worker.HandlerOptions{Gatherer: prometheus.NewRegistry(), Version: "v1.2.3", LandingPage: web.LandingPage})
	if err != nil {
		log.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page, _ := io.ReadAll(rec.Body)
	fmt.Println(rec.Code, strings.Contains(string(page), `<a href="/metrics">Metrics</a>`), strings.Contains(string(page), "Version: v1.2.3"))
	// Output: 200 true true
}
