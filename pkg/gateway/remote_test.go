package gateway

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"no proxy", "203.0.113.7:5000", "", "203.0.113.7"},
		{"untrusted peer cannot name itself", "203.0.113.7:5000", "1.2.3.4", "203.0.113.7"},
		{"trusted proxy", "10.0.0.2:5000", "198.51.100.9", "198.51.100.9"},
		{"spoofed leftmost entry ignored", "10.0.0.2:5000", "1.2.3.4, 198.51.100.9", "198.51.100.9"},
		{"chain of trusted proxies", "10.0.0.2:5000", "198.51.100.9, 10.1.1.1", "198.51.100.9"},
		{"only proxies", "10.0.0.2:5000", "10.1.1.1", "10.1.1.1"},
		{"malformed hop", "10.0.0.2:5000", "garbage", "10.0.0.2"},
		{"ipv6 client", "10.0.0.2:5000", "2001:db8::1", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/ws", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := clientAddr(r, trusted); got != tt.want {
				t.Fatalf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}
