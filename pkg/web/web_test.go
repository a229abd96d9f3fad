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
	for _, path := range []string{"/", "/static/app.js", "/static/style.css"} {
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
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /nope = %d", rec.Code)
	}
}

// The client loads nothing from other hosts and never renders network text
// as HTML.
func TestClientStaysLocalAndEscapes(t *testing.T) {
	t.Parallel()
	external := regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//`)
	for _, name := range []string{"static/index.html", "static/app.js", "static/style.css"} {
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
