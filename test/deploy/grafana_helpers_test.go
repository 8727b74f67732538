package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	gdash "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	sigsjson "sigs.k8s.io/json"
)

// grafanaDashboard is the SDK's type of Grafana's classic dashboard JSON
// model, the one file provisioning and import read and worker.json is in.
// The SDK marks it deprecated in favour of dashboardv2, a different model
// (Grafana's v2 resource), which does not describe this file.
type grafanaDashboard = gdash.Dashboard //nolint:staticcheck // see above

// registerGrafanaPlugins registers the SDK's panel and query types, which
// its decoders look up by panel type and data source type.
var registerGrafanaPlugins = sync.OnceFunc(plugins.RegisterDefaultPlugins)

// grafanaFills matches the paths of the required fields that Grafana fills
// in itself when it loads a dashboard, so a dashboard may leave them out:
// the options of a panel (the panel plugin's defaults) and the current
// value of a variable (resolved on load).
var grafanaFills = regexp.MustCompile(`^(panels\[\d+\]\.)+options\.|^templating\.list\[\d+\]\.current\.`)

const sdkMissing = "required field is missing from input"

// decodeDashboard decodes a dashboard JSON model into the
// grafana-foundation-sdk's dashboard.Dashboard and refuses what that schema
// does not know. Three checks, because none covers the model alone:
//
//   - Dashboard.UnmarshalJSONStrict, the SDK's strict entry point, refuses
//     unknown fields, wrong types and missing required fields in the
//     dashboard, panels, panel options and queries; of the missing ones
//     only those Grafana fills in itself (grafanaFills) are let through.
//     (json.Decoder.DisallowUnknownFields catches only the top level: the
//     SDK's UnmarshalJSON methods of panels and queries decode with plain
//     json.Unmarshal, so an unknown panel field passes.)
//   - Its strict path decodes fieldConfig leniently, so the model is also
//     decoded with the SDK's UnmarshalJSON, encoded again, and every field
//     of the input must come back: one that does not is unknown to the SDK.
//   - sigs.k8s.io/json refuses a field given twice, which encoding/json
//     takes silently (the last one wins).
//
// The dashboard returned is the lenient decoding, which keeps panels whose
// options leave out Grafana's defaults (the strict one drops them).
func decodeDashboard(raw []byte) (grafanaDashboard, error) {
	registerGrafanaPlugins()
	var errs []string

	var strict grafanaDashboard
	if err := strict.UnmarshalJSONStrict(raw); err != nil {
		var be cog.BuildErrors
		if !errors.As(err, &be) {
			return grafanaDashboard{}, err
		}
		for _, e := range be {
			if e.Message == sdkMissing && grafanaFills.MatchString(e.Path) {
				continue
			}
			errs = append(errs, e.Error())
		}
	}

	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return grafanaDashboard{}, err
	}
	var in any
	strictErrs, err := sigsjson.UnmarshalStrict(raw, &in, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return grafanaDashboard{}, err
	}
	for _, e := range strictErrs {
		errs = append(errs, e.Error())
	}
	b, err := json.Marshal(d)
	if err != nil {
		return grafanaDashboard{}, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return grafanaDashboard{}, err
	}
	for _, p := range droppedFields("", in, out) {
		errs = append(errs, p+": unknown to the SDK's dashboard schema")
	}

	if len(errs) > 0 {
		sort.Strings(errs)
		return grafanaDashboard{}, errors.New(strings.Join(errs, "; "))
	}
	return d, nil
}

// droppedFields returns the paths of the fields of in that out lacks. An
// empty value ([], {} or null) may be dropped: the SDK leaves it out when
// it encodes, and it means the same as an absent field.
func droppedFields(path string, in, out any) []string {
	var dropped []string
	switch in := in.(type) {
	case map[string]any:
		o, _ := out.(map[string]any)
		for k, v := range in {
			p := k
			if path != "" {
				p = path + "." + k
			}
			ov, ok := o[k]
			if !ok {
				if !isEmptyJSON(v) {
					dropped = append(dropped, p)
				}
				continue
			}
			dropped = append(dropped, droppedFields(p, v, ov)...)
		}
	case []any:
		o, _ := out.([]any)
		for i, v := range in {
			p := fmt.Sprintf("%s[%d]", path, i)
			if i >= len(o) {
				dropped = append(dropped, p)
				continue
			}
			dropped = append(dropped, droppedFields(p, v, o[i])...)
		}
	}
	return dropped
}

func isEmptyJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}
