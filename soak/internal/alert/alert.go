// Package alert posts the soak's alarm to Alertmanager's v2 API.
package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Alert names posted by the harness.
const (
	// NameLeak is the alertname of a leaking series.
	NameLeak = "SoakLeakDetected"
	// NameInvariant is the alertname of a broken invariant.
	NameInvariant = "SoakInvariantBroken"
)

// DefaultTimeout bounds one POST.
const DefaultTimeout = 10 * time.Second

// ErrStatus is returned, wrapped, when Alertmanager refuses the alerts.
var ErrStatus = errors.New("unexpected HTTP status")

// Alert is one alert in Alertmanager's API v2 postableAlert shape.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Post sends alerts to <baseURL>/api/v2/alerts.
func Post(ctx context.Context, client *http.Client, baseURL string, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	if client == nil {
		client = http.DefaultClient
	}
	url := strings.TrimRight(baseURL, "/") + "/api/v2/alerts"
	body, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("cannot encode alerts: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("cannot post alerts to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot post alerts to %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cannot post alerts to %s: %w %s: %s", url, ErrStatus, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
