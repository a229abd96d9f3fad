package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestServesClientWithStrictHeaders(t *testing.T) {
	t.Parallel()
	h := Handler()
	for _, path := range []string{"/", "/static/app.js", "/static/conn.js", "/static/style.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d", path, rec.Code)
		}
		hdr := rec.Header()
		if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") ||
			hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("Cache-Control") == "" {
			t.Fatalf("GET %s: headers %v", path, hdr)
		}
	}
	for _, path := range []string{"/nope", "/static/nope.js", "/static/index.html", "/static/../web.go"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code == http.StatusOK { // 404, or a redirect to the cleaned path
			t.Fatalf("GET %s = %d", path, rec.Code)
		}
	}
}

// Unchanged assets revalidate to 304; the ETag is a content hash, so a new
// release changes it.
func TestETagRevalidation(t *testing.T) {
	t.Parallel()
	h := Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/app.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") {
		t.Fatalf("headers %v", rec.Header())
	}
	req := httptest.NewRequest(http.MethodGet, "/static/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("revalidation = %d, want 304", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/style.css", nil))
	if other := rec.Header().Get("ETag"); other == etag {
		t.Fatal("two different files share an ETag")
	}
}

// The client loads nothing from other hosts and never renders network text
// as HTML.
func TestClientStaysLocalAndEscapes(t *testing.T) {
	t.Parallel()
	external := regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`)
	for _, name := range []string{"static/index.html", "static/app.js", "static/conn.js", "static/style.css"} {
		f, err := static.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if external.Match(b) || strings.Contains(string(b), "@import") {
			t.Errorf("%s references another host", name)
		}
		if strings.Contains(string(b), "innerHTML") || strings.Contains(string(b), "insertAdjacentHTML") {
			t.Errorf("%s writes HTML", name)
		}
	}
}
