package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamchat/streamchat/pkg/chat"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestMintVerify(t *testing.T) {
	t.Parallel()
	v, err := New(Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Mint(secret, "alice", "Alice", []string{"lobby", "team-*"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	who, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if who.UserID != "alice" || who.Name != "Alice" || who.Sender != "u:alice" || fmt.Sprint(who.Rooms) != "[lobby team-*]" || time.Until(who.Expires) < 59*time.Minute {
		t.Fatalf("identity %+v", who)
	}
	// The name defaults to the user id.
	tok, _ = Mint(secret, "bob", "", nil, time.Hour)
	if who, err := v.Verify(tok); err != nil || who.Name != "bob" || who.Rooms != nil {
		t.Fatalf("no name: %+v %v", who, err)
	}
	// Every refusal is an unauthorized chat.Error.
	for _, bad := range []string{"", "x.y.z"} {
		_, err := v.Verify(bad)
		var ce *chat.Error
		if !errors.As(err, &ce) || ce.Code != chat.CodeUnauthorized {
			t.Fatalf("Verify(%q) = %v", bad, err)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"none":         {},
		"two sources":  {Secret: secret, JWKSURL: "http://127.0.0.1:1/jwks"},
		"short secret": {Secret: []byte("short")},
		"not a key":    {PublicKey: []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Each public key type pins its algorithm.
func TestPublicKeys(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name   string
		pub    any
		method jwt.SigningMethod
		priv   any
	}{
		{"ES256", &ec.PublicKey, jwt.SigningMethodES256, ec},
		{"EdDSA", edPub, jwt.SigningMethodEdDSA, edPriv},
	} {
		v, err := New(Options{PublicKey: pemOf(t, tt.pub)})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}}
		signed, _ := jwt.NewWithClaims(tt.method, c).SignedString(tt.priv)
		if who, err := v.Verify(signed); err != nil || who.UserID != "alice" {
			t.Fatalf("%s: %+v %v", tt.name, who, err)
		}
		hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(pemOf(t, tt.pub))
		if _, err := v.Verify(hs); err == nil {
			t.Fatalf("%s: an HS256 token signed with the public key was accepted", tt.name)
		}
	}
}

func TestIssuerAudience(t *testing.T) {
	t.Parallel()
	v, _ := New(Options{Secret: secret, Issuer: "https://id.example.com", Audience: "chat"})
	sign := func(iss, aud string) string {
		c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", Issuer: iss, Audience: jwt.ClaimStrings{aud}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute))}}
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		return s
	}
	if _, err := v.Verify(sign("https://id.example.com", "chat")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]string{{"https://evil.example", "chat"}, {"https://id.example.com", "billing"}} {
		if _, err := v.Verify(sign(bad[0], bad[1])); err == nil {
			t.Fatalf("iss %s aud %s accepted", bad[0], bad[1])
		}
	}
}

func TestRoomList(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`["lobby","team-*"]`: "[lobby team-*]",
		`"lobby, team-*"`:    "[lobby team-*]",
		`[]`:                 "[]",
	} {
		var l RoomList
		if err := json.Unmarshal([]byte(in), &l); err != nil || fmt.Sprint([]string(l)) != want {
			t.Errorf("%s → %v %v, want %s", in, l, err, want)
		}
	}
	var l RoomList
	if err := json.Unmarshal([]byte(`42`), &l); err == nil {
		t.Error("a number was accepted as rooms")
	}
}
