package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/sqlworker/worker/soak/internal/detect"
	"github.com/sqlworker/worker/soak/internal/origin"
	"github.com/sqlworker/worker/soak/internal/runner"
)

// view is what the page template renders.
type view struct {
	*Report
	Headline     string
	Chips        []chip // the alarms, one per leaking series or broken rule
	StatusText   string
	StartedAt    string
	RanFor       string
	Planned      string
	WarmupText   string
	IntervalText string
	Rows         []row
	Rules        []rule
	Cards        []card // leaking series, drawn wide
	Small        []card // the others, three to a row
	LeakCount    int
	RuleBroken   int
	RuleHeld     int
	RuleNA       int
	NoOrigin     string       // why no origin is given, on an alarm
	Finds        []originView // where each leaking series grew
}

// originView is one finding of the origins section.
type originView struct {
	Series, Head, Note, Col string
	Sites                   []siteView
}

type siteView struct {
	origin.Site
	Amount string
}

// origins fills the origins section of v, on an alarm.
func (v *view) origins(r *Report) {
	o := r.Origins
	if o == nil || r.Status != runner.StatusLeak {
		return
	}
	v.NoOrigin = o.Unavailable
	for _, f := range o.Findings {
		ov := originView{Series: f.Series, Head: findingHead(f), Note: f.Note, Col: "Growth"}
		if f.Measure == "open" {
			ov.Col = "Open"
		}
		for _, s := range f.Sites {
			ov.Sites = append(ov.Sites, siteView{Site: s, Amount: f.Amount(s)})
		}
		v.Finds = append(v.Finds, ov)
	}
}

type chip struct {
	Name, Detail string
}

type row struct {
	ID, Key, Verdict, Class, Now, Slope, P, Highs, Noise, Tolerance, Growth, Reason, Why string
	Spark                                                                                template.HTML
}

type rule struct {
	Class, Mark, Text, Detail string
}

type card struct {
	ID, Key, Class, Badge, Stats, Reason string
	SVG                                  template.HTML
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9]+`)

// WriteHTML writes report.html: one page, no external assets, no script.
func (r *Report) WriteHTML(w io.Writer) error {
	v := view{Report: r}
	v.hero(r)
	v.StartedAt = r.Started.Format("2006-01-02 15:04:05 UTC")
	v.RanFor = dur(r.Elapsed)
	v.Planned = dur(r.Duration)
	v.WarmupText = durMS(r.Warmup)
	v.IntervalText = durMS(r.Interval)
	limits, broken := v.rules(r)
	v.series(r, limits, broken)
	v.origins(r)
	return page.Execute(w, v)
}

// hero sets the page's status, its headline, and the chips that name each
// alarm when there are too many for one sentence.
func (v *view) hero(r *Report) {
	switch r.Status {
	case runner.StatusLeak:
		v.StatusText = "LEAK"
		if !hasLeak(r) {
			v.StatusText = "BROKEN"
		}
	case runner.StatusError:
		v.StatusText = "COULD NOT SOAK"
	default:
		v.StatusText = "STEADY"
	}
	v.Headline = r.Verdict
	if i := strings.Index(v.Headline, ": "); i >= 0 && i < 40 {
		v.Headline = v.Headline[i+2:]
	}
	for _, s := range r.Series {
		if s.Verdict.Leak {
			v.Chips = append(v.Chips, chip{Name: s.Key, Detail: formatRate(s.SlopePerHour, s.Kind)})
		}
	}
	for _, inv := range r.Invariants {
		if inv.Broken {
			v.Chips = append(v.Chips, chip{Name: inv.Rule, Detail: inv.Detail})
		}
	}
	if len(v.Chips) <= 2 && len(v.Headline) <= 160 {
		v.Chips = nil
		return
	}
	// Too many alarms for one sentence: say how many, list them below.
	var parts []string
	if n := len(r.Leaking); n > 0 {
		parts = append(parts, plural(n, "series keeps rising", "series keep rising"))
	}
	if n := len(v.Chips) - len(r.Leaking); n > 0 {
		parts = append(parts, plural(n, "invariant broken", "invariants broken"))
	}
	v.Headline = strings.Join(parts, "; ") + "."
}

// rules lists the invariants, and returns the limit each sets on its
// series and the details of the broken rules of each series.
func (v *view) rules(r *Report) (limits map[string]float64, broken map[string][]string) {
	limits = map[string]float64{}
	broken = map[string][]string{} // series key → details of its broken rules
	for _, inv := range r.Invariants {
		if inv.Applies && inv.Series != "" && inv.Limit > 0 {
			limits[inv.Series] = inv.Limit
		}
		rl := rule{Text: inv.Text, Detail: inv.Detail}
		switch {
		case !inv.Applies:
			rl.Class, rl.Mark = "na", "–"
			v.RuleNA++
		case inv.Broken:
			rl.Class, rl.Mark = "bad", "✕"
			v.RuleBroken++
			if inv.Series != "" {
				broken[inv.Series] = append(broken[inv.Series], inv.Detail)
			}
		default:
			rl.Class, rl.Mark = "ok", "✓"
			v.RuleHeld++
		}
		v.Rules = append(v.Rules, rl)
	}
	return limits, broken
}

// series adds a table row and a chart card per series: those in alarm
// first, with wide charts.
func (v *view) series(r *Report, limits map[string]float64, broken map[string][]string) {
	end := math.Max(r.Elapsed, r.Duration*boolf(!r.StoppedEarly && r.Status != runner.StatusError))
	var rest []row
	for _, s := range r.Series {
		id := "s-" + strings.Trim(nonID.ReplaceAllString(s.Key, "-"), "-")
		rw, c := judgedRow(s, id, broken[s.Key])
		alarm := s.Verdict.Leak || len(broken[s.Key]) > 0
		if s.Verdict.Leak {
			v.LeakCount++
		}
		var lim *float64
		if l, ok := limits[s.Key]; ok {
			lim = &l
		}
		rw.Spark = chart(sparkGeom, s, r.Warmup, end, nil, alarm)
		if alarm {
			c.SVG = chart(wideGeom, s, r.Warmup, end, lim, alarm)
			v.Rows = append(v.Rows, rw)
			v.Cards = append(v.Cards, c)
		} else {
			c.SVG = chart(smallGeom, s, r.Warmup, end, lim, alarm)
			rest = append(rest, rw)
			v.Small = append(v.Small, c)
		}
	}
	// Leaking series first: they are what the reader came for.
	v.Rows = append(v.Rows, rest...)
}

// judgedRow returns the table row and the card of series s, given the
// details of its broken rules.
func judgedRow(s Series, id string, broken []string) (row, card) {
	vd := s.Verdict
	rw := row{ID: id, Key: s.Key, Reason: vd.Reason, Why: s.Why}
	c := card{ID: id, Key: s.Key, Reason: vd.Reason}
	switch {
	case vd.Leak:
		rw.Verdict, rw.Class = "leak", "leak"
		c.Class, c.Badge = "leak", "LEAK"
	case len(broken) > 0:
		rw.Verdict, rw.Class = "broken", "leak"
		c.Class, c.Badge = "leak", "INVARIANT BROKEN"
		rw.Reason = strings.Join(broken, "; ")
		c.Reason = rw.Reason
	case vd.Outcome == detect.TooShort:
		rw.Verdict, rw.Class = "too short", "na"
		c.Class, c.Badge = "na", "TOO SHORT TO DECIDE"
	case vd.Outcome == detect.TooNoisy:
		rw.Verdict, rw.Class = "too noisy", "warn"
		c.Class, c.Badge = "warn", "TOO NOISY TO DECIDE"
	default:
		rw.Verdict, rw.Class = "steady", "ok"
		c.Class, c.Badge = "ok", "STEADY"
	}
	if n := len(s.Samples); n > 0 {
		rw.Now = formatValue(s.Samples[n-1][1], s.Kind)
	}
	rw.Slope = formatRate(s.SlopePerHour, s.Kind)
	rw.P = pval(vd.P, vd.N)
	if vd.N >= 3 {
		rw.Highs = fmt.Sprintf("%s → %s", formatValue(vd.EarlyHigh, s.Kind), formatValue(vd.LateHigh, s.Kind))
	}
	rw.Noise, rw.Tolerance, rw.Growth = Judgement(s)
	c.Stats = fmt.Sprintf("trend %s · Mann–Kendall p %s · noise %s · tolerance %s · high-water %s (%s)",
		rw.Slope, rw.P, rw.Noise, rw.Tolerance, orDash(rw.Highs), rw.Growth)
	return rw, c
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func hasLeak(r *Report) bool { return len(r.Leaking) > 0 }

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func pval(p float64, n int) string {
	switch {
	case n < 3:
		return "—"
	case p < 1e-12:
		return "< 1e-12"
	case p < 0.001:
		return fmt.Sprintf("%.1e", p)
	default:
		return fmt.Sprintf("%.3f", p)
	}
}

// durMS formats a short duration to the millisecond.
func durMS(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(time.Millisecond).String()
}

func dur(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(time.Second).String()
}

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Soak {{.StatusText}} · {{.RunID}}</title>
<style>
:root{--ink:#1d2330;--muted:#6b7385;--line:#e3e6ec;--bg:#f4f5f8;--card:#fff;
--ok:#1f9d55;--ok-bg:#e8f6ee;--bad:#d92d3a;--bad-bg:#fdecee;--warn:#c77700;--warn-bg:#fff4e0;--na:#8a91a1;--na-bg:#eef0f4;--blue:#2f6fde}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:28px 28px 48px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.hero{display:flex;gap:22px;align-items:center;background:var(--card);border-radius:14px;padding:22px 26px;
box-shadow:0 1px 2px rgba(20,30,50,.06),0 4px 18px rgba(20,30,50,.05);border-left:10px solid var(--ok)}
.hero.leak{border-left-color:var(--bad)} .hero.error{border-left-color:var(--warn)}
.pill{display:inline-block;font-weight:700;letter-spacing:.06em;border-radius:999px;padding:2px 10px;font-size:12px;white-space:nowrap}
.hero .pill{font-size:22px;padding:8px 20px}
.steady .pill.big{background:var(--ok-bg);color:var(--ok)} .leak .pill.big{background:var(--bad-bg);color:var(--bad)} .error .pill.big{background:var(--warn-bg);color:var(--warn)}
.hero h1{font-size:20px;line-height:1.35;margin:0 0 6px;font-weight:600}
.hero .sub{color:var(--muted);margin:0}
.chips{list-style:none;margin:4px 0 10px;padding:0;display:flex;flex-wrap:wrap;gap:6px}
.chips li{background:var(--bad-bg);color:#8f1d27;border-radius:8px;padding:3px 9px;font-size:12.5px}
.chips code{font-weight:600} .chips span{opacity:.85}
.facts{display:grid;grid-template-columns:repeat(4,1fr);gap:1px;background:var(--line);border-radius:12px;overflow:hidden;margin:18px 0 26px;border:1px solid var(--line)}
.facts div{background:var(--card);padding:10px 14px}
.facts dt{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.05em}
.facts dd{margin:2px 0 0;font-weight:600;overflow-wrap:anywhere}
h2{font-size:15px;text-transform:uppercase;letter-spacing:.07em;color:var(--muted);margin:30px 0 10px;font-weight:700}
table{width:100%;border-collapse:collapse;background:var(--card);border-radius:12px;overflow:hidden;box-shadow:0 1px 2px rgba(20,30,50,.06)}
th,td{text-align:left;padding:8px 12px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em;background:#fafbfc}
th.num{text-align:right}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:last-child td{border-bottom:0}
tr.leak td{background:#fff6f7} tr.leak td:first-child{box-shadow:inset 4px 0 var(--bad)}
td a{color:inherit;text-decoration:none;border-bottom:1px dotted var(--muted);overflow-wrap:anywhere}
table{table-layout:auto} td:first-child{max-width:330px}
.pill.ok{background:var(--ok-bg);color:var(--ok)} .pill.leak,.pill.bad{background:var(--bad-bg);color:var(--bad)} .pill.na{background:var(--na-bg);color:var(--na)} .pill.warn{background:var(--warn-bg);color:var(--warn)}
.reason{color:var(--muted);font-size:12px;margin-top:2px}
.rules{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
.rule{background:var(--card);border-radius:10px;padding:10px 14px;display:flex;gap:12px;align-items:flex-start;box-shadow:0 1px 2px rgba(20,30,50,.06);border:1px solid transparent}
.rule .mark{flex:none;width:26px;height:26px;border-radius:50%;display:grid;place-items:center;font-weight:800}
.rule.ok .mark{background:var(--ok-bg);color:var(--ok)} .rule.bad{border-color:#f3b6bc} .rule.bad .mark{background:var(--bad-bg);color:var(--bad)} .rule.na{opacity:.65} .rule.na .mark{background:var(--na-bg);color:var(--na)}
.rule b{display:block;font-weight:600} .rule span{color:var(--muted);font-size:12.5px}
.legend{display:flex;flex-wrap:wrap;gap:18px;color:var(--muted);font-size:12.5px;margin:-2px 0 12px}
.legend i{display:inline-block;width:22px;height:0;border-top:2px solid;vertical-align:middle;margin-right:6px}
.legend i.box{height:12px;border:0;background:#eef0f4;width:18px}
.cards{display:grid;gap:16px;margin-bottom:16px}
.cards.wide{grid-template-columns:minmax(0,1fr)} .cards.small{grid-template-columns:repeat(3,minmax(0,1fr))}
.cards.small .card h3{font-size:12.5px} .cards.small .stats{font-size:11.5px}
td.spark{width:128px;padding-top:6px;padding-bottom:4px} td.spark svg{width:120px}
.card{background:var(--card);border-radius:12px;padding:14px 16px 8px;box-shadow:0 1px 2px rgba(20,30,50,.06),0 4px 14px rgba(20,30,50,.04);border:1px solid transparent}
.card.leak{border:2px solid var(--bad);box-shadow:0 0 0 4px var(--bad-bg)}
.card header{display:flex;justify-content:space-between;gap:10px;align-items:baseline}
.card h3{margin:0;font-size:13.5px;font-weight:600;overflow-wrap:anywhere}
.card .stats{color:var(--muted);font-size:12px;margin:4px 0 2px}
.card .why{color:var(--muted);font-size:12px;margin:2px 0 6px}
.card.leak .why{color:var(--bad)}
.card.warn{border:1px solid #f0c27a} .card.warn .why{color:var(--warn)}
svg{display:block;width:100%;height:auto}
svg text{font:10.5px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#6b7385}
svg .ylab{text-anchor:end} svg .band{fill:#8a91a1;font-style:italic}
svg .limit{text-anchor:end;fill:#d92d3a;font-weight:600} svg .hwm{fill:#b86f00;font-size:10px}
.missing{color:var(--muted)}
.origin{margin:0 0 16px} .origin h3{font-size:13.5px;margin:0 0 2px} .origin td.mono{overflow-wrap:anywhere}
footer{margin-top:34px;color:var(--muted);font-size:12.5px;border-top:1px solid var(--line);padding-top:14px}
footer p{margin:4px 0}
</style>
</head>
<body><main>
<section class="hero {{.Status}}">
 <div class="pill big">{{.StatusText}}</div>
 <div>
  <h1>{{.Headline}}</h1>
  {{if .Chips}}<ul class="chips">{{range .Chips}}<li><code>{{.Name}}</code> <span>{{.Detail}}</span></li>{{end}}</ul>{{end}}
  <p class="sub">{{if .LeakCount}}{{.LeakCount}} leaking series · {{end}}{{if .RuleBroken}}{{.RuleBroken}} broken invariant(s) · {{end}}{{len .Series}} series watched · {{.RuleHeld}} invariant(s) held{{if .RuleNA}}, {{.RuleNA}} not applicable{{end}}{{if .StoppedEarly}} · stopped early by --fail-fast{{end}}</p>
 </div>
</section>

<dl class="facts">
 <div><dt>Run</dt><dd class="mono">{{.RunID}}</dd></div>
 <div><dt>Target</dt><dd class="mono">{{.Target}}</dd></div>
 <div><dt>Started</dt><dd>{{.StartedAt}}</dd></div>
 <div><dt>Ran</dt><dd>{{.RanFor}} of {{.Planned}}</dd></div>
 <div><dt>Warm-up</dt><dd>{{.WarmupText}} (shown, not judged)</dd></div>
 <div><dt>Interval</dt><dd>{{.IntervalText}}</dd></div>
 <div><dt>Scrapes</dt><dd>{{.Scrapes}}{{if .FailedScrapes}} ({{.FailedScrapes}} failed){{end}}</dd></div>
 <div><dt>Fail-fast</dt><dd>{{if .FailFast}}on{{if .StoppedEarly}}, stopped early{{end}}{{else}}off{{end}}</dd></div>
 {{if .Command}}<div style="grid-column:1/-1"><dt>Command</dt><dd class="mono">{{range .Command}}{{.}} {{end}}</dd></div>{{end}}
 {{if .Error}}<div style="grid-column:1/-1"><dt>Could not soak</dt><dd>{{.Error}}</dd></div>{{end}}
</dl>

<h2>Series</h2>
<table>
<thead><tr><th>Series</th><th>Verdict</th><th>Shape</th><th class="num">Now</th><th class="num">Trend</th><th class="num">MK p</th><th class="num">Noise (p-p)</th><th class="num">Tolerance</th><th class="num">High-water early → late</th><th class="num">Growth</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="{{.Class}}"><td><a class="mono" href="#{{.ID}}">{{.Key}}</a><div class="reason">{{.Reason}}</div></td><td><span class="pill {{.Class}}">{{.Verdict}}</span></td><td class="spark">{{.Spark}}</td><td class="num">{{.Now}}</td><td class="num">{{.Slope}}</td><td class="num">{{.P}}</td><td class="num">{{.Noise}}</td><td class="num" title="{{.Why}}">{{.Tolerance}}</td><td class="num">{{.Highs}}</td><td class="num">{{.Growth}}</td></tr>
{{end}}</tbody>
</table>
{{if .NoOrigin}}<p class="missing">No origin given: {{.NoOrigin}}</p>{{end}}
{{if .Finds}}<h2>Where it leaks</h2>
{{range .Finds}}<div class="origin"><h3 class="mono">{{.Series}}</h3><p class="reason">{{.Head}}</p>
{{if .Sites}}<table><thead><tr><th class="num">{{.Col}}</th><th>Function</th><th>File</th><th>Called from</th></tr></thead><tbody>
{{range .Sites}}<tr><td class="num">{{.Amount}}</td><td class="mono">{{.Function}}</td><td class="mono">{{.File}}:{{.Line}}</td><td class="mono">{{range .Callers}}{{.}}<br>{{end}}</td></tr>
{{end}}</tbody></table>{{end}}{{if .Note}}<p class="reason">{{.Note}}</p>{{end}}</div>
{{end}}{{end}}
{{if .Missing}}<p class="missing">Not exposed by the target, skipped: {{range $i, $m := .Missing}}{{if $i}}, {{end}}<code>{{$m}}</code>{{end}}.</p>{{end}}

<h2>Invariants</h2>
<div class="rules">
{{range .Rules}}<div class="rule {{.Class}}"><div class="mark">{{.Mark}}</div><div><b>{{.Text}}</b><span>{{.Detail}}</span></div></div>
{{end}}</div>

<h2>Charts</h2>
<div class="legend">
 <span><i class="box"></i>warm-up (not judged)</span>
 <span><i style="border-color:#2f6fde"></i>samples</span>
 <span><i style="border-color:#d92d3a"></i>samples of a leaking series</span>
 <span><i style="border-color:#1d2330;border-top-style:dashed"></i>Theil–Sen trend</span>
 <span><i style="border-color:#e08a00;border-top-style:dashed"></i>high-water mark, first and last third</span>
 <span><i style="border-color:#d92d3a;border-top-style:dotted"></i>invariant limit</span>
</div>
{{if .Cards}}<div class="cards wide">
{{range .Cards}}{{template "card" .}}{{end}}</div>{{end}}
{{if .Small}}<div class="cards small">
{{range .Small}}{{template "card" .}}{{end}}</div>{{end}}

<footer>
 <p><b>How the verdict is reached.</b> Samples taken during warm-up are shown, not judged. Each series is judged against its own noise: the peak-to-peak spread of its samples after warm-up once the Theil–Sen trend is taken out. Its tolerance is 1.5 × that noise, never less than a small floor (1.5 for counts, a few MiB for memory), unless <code>--tolerance</code> fixed it. A series leaks when the Mann–Kendall test finds an upward trend (tie-corrected, p &lt; 0.001), its Theil–Sen slope is positive, the high-water mark of the last third stands above the first third's by more than the tolerance, and the last third still stands above the middle third. Noise, a sawtooth, one spike or a step that stopped pass. A series whose trend line rose beyond its tolerance while its high-water marks did not is too noisy to decide; one with fewer than 12 samples after warm-up is too short. Invariants are judged on every sample, warm-up included.</p>
 <p>Files beside this page: <code>report.json</code> (every sample and statistic), <code>samples.csv</code>, and, when the target serves net/http/pprof, its profiles in <code>profiles/</code> (<code>go tool pprof -base NAME.base.pb.gz NAME.end.pb.gz</code>). Exit status: 0 steady, 1 leak or broken invariant, 2 could not soak.</p>
</footer>
</main></body>
</html>
{{define "card"}}<article class="card {{.Class}}" id="{{.ID}}">
 <header><h3 class="mono">{{.Key}}</h3><span class="pill {{.Class}}">{{.Badge}}</span></header>
 <p class="stats">{{.Stats}}</p>
 {{.SVG}}
 <p class="why">{{.Reason}}</p>
</article>
{{end}}`))
