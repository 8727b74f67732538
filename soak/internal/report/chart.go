package report

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"

	"github.com/sqlworker/worker/soak/internal/detect"
)

// geom is a chart's size in SVG user units; the SVG scales to its card, so
// each layout gets its own geometry to keep text at a readable size.
type geom struct {
	W, H                     int
	left, right, top, bottom int
}

func (g geom) plotW() float64 { return float64(g.W - g.left - g.right) }
func (g geom) plotH() float64 { return float64(g.H - g.top - g.bottom) }

// Geometries of the page's layouts.
var (
	wideGeom  = geom{W: 1160, H: 260, left: 62, right: 16, top: 16, bottom: 26}
	smallGeom = geom{W: 372, H: 170, left: 60, right: 12, top: 12, bottom: 24}
	sparkGeom = geom{W: 120, H: 26, left: 1, right: 1, top: 2, bottom: 2}
)

// Chart colours; they match the page's CSS.
const (
	colLine    = "#2f6fde"
	colLeak    = "#d92d3a"
	colTrend   = "#1d2330"
	colHWM     = "#e08a00"
	colGrid    = "#e6e9ef"
	colWarm    = "#eef0f4"
	colAxisTxt = "#6b7385"
)

// plot is one chart being drawn: its geometry, its series and the value
// and time ranges that map them onto the SVG.
type plot struct {
	g         geom
	s         Series
	ts, vs    []float64
	warmup    float64
	bare      bool // a sparkline: no text, no grid, no limit
	judged    bool // samples go past the warm-up
	lo, hi    float64
	xmax      float64
	ticks     []float64
	trendFrom float64
	trendTo   float64
	drawTrend bool
	b         strings.Builder
}

func (p *plot) x(t float64) float64   { return float64(p.g.left) + t/p.xmax*p.g.plotW() }
func (p *plot) y(val float64) float64 { return float64(p.g.top) + (p.hi-val)/(p.hi-p.lo)*p.g.plotH() }

// chart returns the inline SVG of one series: warm-up shaded, the samples,
// the Theil–Sen trend over the judged part, the high-water marks of the
// first and last thirds that the verdict compares, and a limit line when an
// invariant bounds the series.
func chart(g geom, s Series, warmup, end float64, limit *float64, alarm bool) template.HTML {
	if len(s.Samples) == 0 {
		return template.HTML(`<p class="empty">no samples</p>`)
	}
	p := &plot{g: g, s: s, warmup: warmup, bare: g.H < 40}
	p.ts = make([]float64, len(s.Samples))
	p.vs = make([]float64, len(s.Samples))
	for i, pt := range s.Samples {
		p.ts[i], p.vs[i] = pt[0], pt[1]
	}
	if p.bare {
		limit = nil
	}
	p.judged = p.ts[len(p.ts)-1] >= warmup
	p.scale(limit, end)

	fmt.Fprintf(&p.b, `<svg viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="%s">`,
		g.W, g.H, html.EscapeString(s.Key))
	p.warmBand()
	if p.bare {
		p.drawTrend = false
	} else {
		p.axesLabels()
		p.limitLine(limit)
		p.highWaterMarks()
	}
	p.samples(s.Verdict.Leak || alarm)
	p.trend()
	if !p.bare {
		fmt.Fprintf(&p.b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#b9bfcc"/>`, g.left, g.W-g.right, g.top+int(g.plotH()), g.top+int(g.plotH()))
	}
	p.b.WriteString(`</svg>`)
	return template.HTML(p.b.String()) //nolint:gosec // built from numbers and escaped text
}

// scale sets the value range (the data, the trend's ends and the limit,
// padded, widened to round ticks) and the time range.
func (p *plot) scale(limit *float64, end float64) {
	v, ts := p.s.Verdict, p.ts
	lo, hi := minMax(p.vs)
	p.trendFrom = math.Max(p.warmup, ts[0])
	p.trendTo = ts[len(ts)-1]
	p.drawTrend = p.judged && v.N >= 2 && p.trendTo > p.trendFrom
	if p.drawTrend {
		for _, t := range []float64{p.trendFrom, p.trendTo} {
			y := v.Intercept + v.Slope*t
			lo, hi = math.Min(lo, y), math.Max(hi, y)
		}
	}
	if limit != nil && *limit <= hi*3+1 {
		lo, hi = math.Min(lo, *limit), math.Max(hi, *limit)
	}
	count := p.s.Kind == detect.Count
	if count {
		lo = 0 // counts start at zero, so growth shows in proportion
	}
	if hi-lo < 1e-9 {
		pad := math.Max(math.Abs(hi)*0.05, 1)
		lo, hi = lo-pad, hi+pad
		if count && lo < 0 {
			lo = 0
		}
	}
	hi += (hi - lo) * 0.06 // headroom, so a flat line does not sit on the frame
	minStep := 0.0
	if count {
		minStep = 1 // no quarter file descriptors
	}
	p.ticks = niceTicks(lo, hi, 4, minStep)
	p.lo, p.hi = math.Min(lo, p.ticks[0]), math.Max(hi, p.ticks[len(p.ticks)-1])
	p.xmax = math.Max(end, ts[len(ts)-1])
	if p.xmax <= 0 {
		p.xmax = 1
	}
}

// warmBand shades the warm-up.
func (p *plot) warmBand() {
	if p.warmup <= 0 {
		return
	}
	g := p.g
	w := p.x(math.Min(p.warmup, p.xmax)) - float64(g.left)
	fmt.Fprintf(&p.b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, g.left, g.top, w, int(g.plotH()), colWarm)
	if !p.bare {
		fmt.Fprintf(&p.b, `<text x="%.1f" y="%d" class="band">warm-up</text>`, float64(g.left)+4, g.top+11)
	}
}

// axesLabels draws the horizontal grid, the y labels and the x labels.
func (p *plot) axesLabels() {
	g := p.g
	for _, tv := range p.ticks {
		yy := p.y(tv)
		fmt.Fprintf(&p.b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>`, g.left, g.W-g.right, yy, yy, colGrid)
		fmt.Fprintf(&p.b, `<text x="%d" y="%.1f" class="ylab">%s</text>`, g.left-6, yy+3.5, html.EscapeString(formatValue(tv, p.s.Kind)))
	}
	for _, tv := range timeTicks(p.xmax, 5) {
		if tv > p.xmax+1e-9 {
			continue
		}
		anchor := "middle"
		if p.x(tv) > float64(g.W-g.right)-16 {
			anchor = "end" // keep the last label inside the frame
		}
		fmt.Fprintf(&p.b, `<text x="%.1f" y="%d" class="xlab" text-anchor="%s">%s</text>`, p.x(tv), g.H-8, anchor, clock(tv, p.xmax))
	}
}

// limitLine draws the limit of an invariant that bounds the series.
func (p *plot) limitLine(limit *float64) {
	if limit == nil || *limit < p.lo || *limit > p.hi {
		return
	}
	g := p.g
	yy := p.y(*limit)
	fmt.Fprintf(&p.b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.2" stroke-dasharray="2 3"/>`,
		g.left, g.W-g.right, yy, yy, colLeak)
	fmt.Fprintf(&p.b, `<text x="%d" y="%.1f" class="limit">limit %s</text>`, g.W-g.right-4, yy-4, html.EscapeString(formatValue(*limit, p.s.Kind)))
}

// highWaterMarks draws the high-water marks of the first and last thirds
// of the judged samples, which the verdict compares.
func (p *plot) highWaterMarks() {
	v := p.s.Verdict
	if v.N < 3 || !p.judged || (!v.Leak && v.Growth <= 0) {
		return
	}
	jt := afterT(p.ts, p.warmup)
	if len(jt) < 3 {
		return
	}
	third := len(jt) / 3
	segs := []struct {
		from, to, val float64
		label         string
	}{
		{jt[0], jt[third-1], v.EarlyHigh, "early high"},
		{jt[len(jt)-third], jt[len(jt)-1], v.LateHigh, "late high"},
	}
	for i, sg := range segs {
		yy := p.y(sg.val)
		fmt.Fprintf(&p.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="5 3"/>`,
			p.x(sg.from), p.x(sg.to), yy, yy, colHWM)
		anchor, tx := "start", p.x(sg.from)
		if i == 1 {
			anchor, tx = "end", p.x(sg.to)
		}
		fmt.Fprintf(&p.b, `<text x="%.1f" y="%.1f" class="hwm" text-anchor="%s">%s</text>`, tx, yy-4, anchor, sg.label)
	}
}

// samples draws the samples as an area and a line, reduced to min/max per
// pixel column so that a long soak keeps its spikes without a huge path.
func (p *plot) samples(leak bool) {
	px, py := reduce(p.g, p.ts, p.vs, p.x, p.y)
	col := colLine
	if leak {
		col = colLeak
	}
	var line strings.Builder
	for i := range px {
		if i == 0 {
			fmt.Fprintf(&line, "M%.1f %.1f", px[i], py[i])
		} else {
			fmt.Fprintf(&line, "L%.1f %.1f", px[i], py[i])
		}
	}
	base := p.y(p.lo)
	fmt.Fprintf(&p.b, `<path d="%sL%.1f %.1fL%.1f %.1fZ" fill="%s" fill-opacity="0.10"/>`, line.String(), px[len(px)-1], base, px[0], base, col)
	width := 1.6
	if p.bare {
		width = 1.2
	}
	fmt.Fprintf(&p.b, `<path d="%s" fill="none" stroke="%s" stroke-width="%.1f" stroke-linejoin="round"/>`, line.String(), col, width)
}

// trend draws the Theil–Sen trend over the judged part.
func (p *plot) trend() {
	if !p.drawTrend {
		return
	}
	v := p.s.Verdict
	fmt.Fprintf(&p.b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.6" stroke-dasharray="7 4" stroke-opacity="0.75"/>`,
		p.x(p.trendFrom), p.x(p.trendTo), p.y(v.Intercept+v.Slope*p.trendFrom), p.y(v.Intercept+v.Slope*p.trendTo), colTrend)
}

func afterT(ts []float64, t float64) []float64 {
	for i, v := range ts {
		if v >= t {
			return ts[i:]
		}
	}
	return nil
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}

// reduce maps points to pixels, keeping at most the first, min, max and last
// point of each pixel column.
func reduce(g geom, ts, vs []float64, x, y func(float64) float64) (px, py []float64) {
	if float64(len(ts)) <= 2*g.plotW() {
		for i := range ts {
			px = append(px, x(ts[i]))
			py = append(py, y(vs[i]))
		}
		return px, py
	}
	col := math.Floor(x(ts[0]))
	start := 0
	flush := func(end int) {
		seg := vs[start:end]
		imin, imax := start, start
		for i, v := range seg {
			if v < vs[imin] {
				imin = start + i
			}
			if v > vs[imax] {
				imax = start + i
			}
		}
		idx := []int{start, imin, imax, end - 1}
		if imax < imin {
			idx[1], idx[2] = imax, imin
		}
		last := -1
		for _, i := range idx {
			if i != last {
				px = append(px, x(ts[i]))
				py = append(py, y(vs[i]))
				last = i
			}
		}
	}
	for i := range ts {
		if c := math.Floor(x(ts[i])); c != col {
			flush(i)
			start, col = i, c
		}
	}
	flush(len(ts))
	return px, py
}

// niceTicks returns about n round tick values covering [lo, hi], spaced
// by at least minStep.
func niceTicks(lo, hi float64, n int, minStep float64) []float64 {
	if hi <= lo {
		return []float64{lo}
	}
	raw := math.Max((hi-lo)/float64(n), minStep)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if minStep >= 1 && m*mag != math.Trunc(m*mag) {
			continue // whole steps for counts
		}
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
		if len(out) > 20 {
			break
		}
	}
	if out[len(out)-1] < hi-1e-9 {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}

// timeSteps are the tick spacings of a time axis, in seconds: ones that a
// clock reads well.
var timeSteps = []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600}

// timeTicks returns about n ticks from 0 to span seconds at a clock-friendly
// spacing.
func timeTicks(span float64, n int) []float64 {
	step := timeSteps[len(timeSteps)-1]
	for _, st := range timeSteps {
		if span/st <= float64(n)*1.25 {
			step = st
			break
		}
	}
	var out []float64
	for i := 0; float64(i)*step <= span+1e-9 && i <= 4*n; i++ {
		out = append(out, float64(i)*step)
	}
	return out
}

// formatValue formats a tick or value for its kind.
func formatValue(v float64, k detect.Kind) string {
	if k == detect.Memory {
		return detect.HumanBytes(v)
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e12 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// formatRate formats a slope per hour for its kind.
func formatRate(perHour float64, k detect.Kind) string {
	if perHour == 0 {
		return "0/h"
	}
	if k == detect.Memory {
		sign := "+"
		if perHour < 0 {
			sign = "−"
		}
		return sign + detect.HumanBytes(math.Abs(perHour)) + "/h"
	}
	if math.Abs(perHour) >= 1e4 {
		return fmt.Sprintf("%+.0f/h", perHour)
	}
	return fmt.Sprintf("%+.3g/h", perHour)
}

// clock formats seconds as m:ss, or h:mm:ss past an hour; on axes shorter
// than 20 s, as seconds with a decimal.
func clock(sec, span float64) string {
	if span < 20 {
		return fmt.Sprintf("%.1fs", sec)
	}
	s := int(math.Round(sec))
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
