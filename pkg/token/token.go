// Package token signs users in: it verifies the JSON Web Tokens a client
// presents at the websocket handshake (HS256 with a shared secret, RS256,
// ES256 or EdDSA with a public key, or keys from an identity provider's
// JWKS endpoint) and turns their claims into a chat.Identity. It also mints
// HS256 tokens, for development and tests.
package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/streamchat/streamchat/pkg/chat"
)

// Options choose the key and the checks. Exactly one of Secret, PublicKey
// and JWKSURL is set.
type Options struct {
	// Secret verifies HS256 tokens.
	Secret []byte
	// PublicKey is a PEM public key: RSA (RS256), ECDSA P-256 (ES256) or
	// Ed25519 (EdDSA).
	PublicKey []byte
	// JWKSURL is an identity provider's JWKS endpoint; its keys are cached,
	// refreshed every RefreshInterval, and fetched again (at most every 5
	// minutes) when a token names a key id it has not seen: a rotation.
	JWKSURL string
	// RefreshInterval of the JWKS. Default 1 hour.
	RefreshInterval time.Duration
	// Issuer and Audience, when set, must match iss and aud.
	Issuer, Audience string
	// Leeway forgives clock skew on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// OnRefreshError is told of a failed JWKS refresh.
	OnRefreshError func(error)
}

// Verifier checks tokens. Close stops its JWKS refresh.
type Verifier struct {
	keyfunc jwt.Keyfunc
	parser  *jwt.Parser
	close   func()
}

// New returns a Verifier for opts. With a JWKS URL it fetches the keys once
// now (a failure is not fatal: the next token that needs a key fetches
// again) and refreshes them until Close.
func New(opts Options) (*Verifier, error) {
	var methods []string
	v := &Verifier{close: func() {}}
	set := 0
	for _, ok := range []bool{len(opts.Secret) > 0, len(opts.PublicKey) > 0, opts.JWKSURL != ""} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("token: set exactly one of a secret, a public key and a JWKS URL")
	}
	switch {
	case len(opts.Secret) > 0:
		if len(opts.Secret) < 32 {
			return nil, errors.New("token: an HS256 secret must be at least 32 bytes")
		}
		secret := opts.Secret
		methods = []string{jwt.SigningMethodHS256.Alg()}
		v.keyfunc = func(*jwt.Token) (any, error) { return secret, nil }
	case len(opts.PublicKey) > 0:
		key, alg, err := parsePublicKey(opts.PublicKey)
		if err != nil {
			return nil, err
		}
		methods = []string{alg}
		v.keyfunc = func(*jwt.Token) (any, error) { return key, nil }
	default:
		ctx, cancel := context.WithCancel(context.Background())
		httpc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
		interval := opts.RefreshInterval
		if interval <= 0 {
			interval = time.Hour
		}
		k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{opts.JWKSURL}, keyfunc.Override{
			Client:          httpc,
			RefreshInterval: interval,
			RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					if opts.OnRefreshError != nil && ctx.Err() == nil {
						opts.OnRefreshError(err)
					}
				}
			},
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("token: JWKS %s: %w", opts.JWKSURL, err)
		}
		// Asymmetric algorithms only: a JWKS never verifies HMAC tokens, so a
		// public key can never serve as an HS256 secret.
		methods = []string{"RS256", "ES256", "EdDSA"}
		v.keyfunc = k.Keyfunc
		v.close = func() {
			cancel()
			httpc.CloseIdleConnections()
		}
	}
	leeway := opts.Leeway
	if leeway <= 0 {
		leeway = 30 * time.Second
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods), // the algorithm is pinned to the key: never "none", never HS with a public key
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	v.parser = jwt.NewParser(popts...)
	return v, nil
}

// Close stops the JWKS refresh, if any.
func (v *Verifier) Close() { v.close() }

func parsePublicKey(pem []byte) (any, string, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pem); err == nil {
		return k, "RS256", nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pem); err == nil {
		if k.Curve.Params().Name != "P-256" {
			return nil, "", fmt.Errorf("token: ECDSA key on %s; ES256 needs P-256", k.Curve.Params().Name)
		}
		return k, "ES256", nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pem); err == nil {
		return k, "EdDSA", nil
	}
	return nil, "", errors.New("token: the public key is not a PEM RSA, ECDSA P-256 or Ed25519 public key")
}

// Claims are the token's claims: the registered ones, the display name and
// the rooms the user may enter.
type Claims struct {
	Name  string   `json:"name,omitempty"`
	Rooms RoomList `json:"rooms,omitempty"`
	jwt.RegisteredClaims
}

// RoomList is the rooms claim: a JSON array of room patterns, or one
// comma-separated string of them.
type RoomList []string

// UnmarshalJSON accepts ["lobby","team-*"] and "lobby,team-*".
func (l *RoomList) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*l = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("rooms must be an array of strings or a comma-separated string")
	}
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func unauthorized(msg string) *chat.Error {
	return &chat.Error{Code: chat.CodeUnauthorized, Message: msg}
}

// Verify checks raw and returns who it signs in. A bad, expired or
// incomplete token is a *chat.Error with code unauthorized; the message
// says what is wrong without echoing the token.
func (v *Verifier) Verify(raw string) (chat.Identity, error) {
	if raw == "" {
		return chat.Identity{}, unauthorized("sign-in required: no token")
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, v.keyfunc)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return chat.Identity{}, unauthorized("the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return chat.Identity{}, unauthorized("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return chat.Identity{}, unauthorized("the token has no expiry (exp)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return chat.Identity{}, unauthorized("the token is for another issuer or audience")
	case err != nil:
		return chat.Identity{}, unauthorized("the token is not valid")
	}
	if !chat.ValidUserID(c.Subject) {
		return chat.Identity{}, unauthorized("the token has no valid subject (sub)")
	}
	name := c.Name
	if name == "" {
		name = c.Subject
	}
	name, nerr := chat.NormalizeName(name)
	if nerr != nil {
		return chat.Identity{}, unauthorized("the token's name is not a valid display name: " + nerr.Message)
	}
	for _, p := range c.Rooms {
		if !validPattern(p) {
			return chat.Identity{}, unauthorized("the token's rooms claim has a bad pattern")
		}
	}
	who := chat.Identity{Name: name, UserID: c.Subject, Sender: "u:" + c.Subject, Rooms: c.Rooms}
	if c.ExpiresAt != nil {
		who.Expires = c.ExpiresAt.Time
	}
	return who, nil
}

// validPattern reports whether p is a room pattern: room characters and '*'.
func validPattern(p string) bool {
	if p == "" || len(p) > chat.MaxRoomLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '*') {
			return false
		}
	}
	return true
}

// Authenticate implements the gateway's Authenticator: the token comes from
// the query parameter token, the Authorization: Bearer header, or the
// chat_token cookie, in that order.
func (v *Verifier) Authenticate(r *http.Request) (chat.Identity, error) {
	return v.Verify(FromRequest(r))
}

// FromRequest returns the token a request presents, or "".
func FromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	if c, err := r.Cookie("chat_token"); err == nil {
		return c.Value
	}
	return ""
}

// Mint returns an HS256 token for sub, named name, allowed into rooms (nil:
// every public room), valid for ttl. For development and tests; production
// tokens come from your identity provider or backend.
func Mint(secret []byte, sub, name string, rooms []string, ttl time.Duration) (string, error) {
	now := time.Now()
	c := Claims{Name: name, Rooms: rooms, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
