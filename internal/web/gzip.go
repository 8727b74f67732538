package web

import (
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// gzipLevel is the level /metrics is compressed at. promhttp compresses at
// gzip's default level (6), a quarter of the CPU of a scrape of the default
// config; level 1 costs a third as much for about 13 % more bytes (5.4 KiB
// against 4.8 KiB, docs/performance.md). klauspost/compress's gzip at level
// 1 writes the same format as compress/gzip's at less CPU again.
const gzipLevel = gzip.BestSpeed

var gzipPool = sync.Pool{New: func() any {
	gz, _ := gzip.NewWriterLevel(nil, gzipLevel) // the level is valid: no error
	return gz
}}

// gzipHandler compresses the 200 responses of next, a promhttp handler
// with DisableCompression, at gzipLevel when the request accepts gzip. It
// negotiates as promhttp does between identity and gzip (its default offers
// without zstd), and leaves every other status (the 503 of the request
// limit, the 500 of a failed gather) uncompressed, as promhttp does.
func gzipHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw := &gzipWriter{ResponseWriter: w, gzip: acceptsGzip(r.Header.Values("Accept-Encoding"))}
		defer gw.close()
		next.ServeHTTP(gw, r)
	})
}

// gzipWriter compresses what is written after a 200 status when gzip is set.
type gzipWriter struct {
	http.ResponseWriter
	gzip        bool
	wroteHeader bool
	gz          *gzip.Writer
}

func (g *gzipWriter) WriteHeader(code int) {
	if g.wroteHeader {
		g.ResponseWriter.WriteHeader(code) // net/http logs the superfluous call
		return
	}
	g.wroteHeader = true
	if code == http.StatusOK {
		h := g.Header()
		h.Add("Vary", "Accept-Encoding")
		if g.gzip {
			h.Set("Content-Encoding", "gzip")
			h.Del("Content-Length")
			g.gz = gzipPool.Get().(*gzip.Writer)
			g.gz.Reset(g.ResponseWriter)
		}
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(p []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	if g.gz != nil {
		return g.gz.Write(p)
	}
	return g.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *gzipWriter) close() {
	if g.gz == nil {
		return
	}
	_ = g.gz.Close() // a write error is the client's to see: nothing to report it to
	g.gz.Reset(nil)
	gzipPool.Put(g.gz)
	g.gz = nil
}

// acceptsGzip reports whether promhttp would answer an Accept-Encoding of
// these values with gzip: offered identity and then gzip, it picks the
// first offer of the highest q that a value names, or "*" matches; gzip
// then only when its q is above identity's.
func acceptsGzip(values []string) bool {
	identity, gz := -1.0, -1.0
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			name, q, ok := parseCoding(part)
			if !ok {
				continue
			}
			if name == "*" || name == "identity" {
				identity = max(identity, q)
			}
			if name == "*" || name == "gzip" {
				gz = max(gz, q)
			}
		}
	}
	return gz > identity && gz > 0
}

// parseCoding parses one element of Accept-Encoding: a coding and its
// optional q parameter (1 when absent).
func parseCoding(s string) (name string, q float64, ok bool) {
	name, params, _ := strings.Cut(s, ";")
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", 0, false
	}
	q = 1
	for p := range strings.SplitSeq(params, ";") {
		k, v, found := strings.Cut(strings.TrimSpace(p), "=")
		if !found || strings.TrimSpace(k) != "q" {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 || f > 1 {
			return "", 0, false
		}
		q = f
	}
	return name, q, true
}
