package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/streamchat/streamchat/pkg/chat"
	"github.com/streamchat/streamchat/pkg/client"
	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/token"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

func jwtMode(c *config.Config) {
	c.Auth, c.JWTSecret = config.AuthJWT, testSecret
}

// claims builds a token's claims: valid for an hour unless changed.
func claims(sub, name string) token.Claims {
	now := time.Now()
	return token.Claims{Name: name, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c token.Claims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hs(t *testing.T, c token.Claims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "")
}

// refused dials and expects one error event with code, then close 1008.
func refused(t *testing.T, url string, header http.Header, code chat.Code) {
	t.Helper()
	c := clienttest.Dial(t, url, &client.Options{Header: header})
	if ev := clienttest.Next(t, c); ev.Type != "error" || ev.Code != string(code) {
		t.Fatalf("first event %+v, want error %s", ev, code)
	}
	if got := clienttest.CloseCode(t, c); got != websocket.StatusPolicyViolation {
		t.Fatalf("close %v, want 1008", got)
	}
}

func streamLen(t *testing.T, cl *cluster, room string) int64 {
	t.Helper()
	n, err := cl.redis.Client().XLen(context.Background(), "chat:{"+room+"}:log").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Every way a token can be wrong gets unauthorized and 1008, appends
// nothing and records no presence; a good one in each of its three places
// signs in.
func TestTokenHandshakes(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, jwtMode)
	r := cl.replicas[0]
	room := uniqueRoom("auth")
	base := fmt.Sprintf("ws://%s/ws?room=%s", r.addr, room)
	other := sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims("alice", "Alice"), "")
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice", "Alice"), "")
	expired := claims("alice", "Alice")
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	early := claims("alice", "Alice")
	early.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	future := claims("alice", "Alice")
	future.IssuedAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	noExp := claims("alice", "Alice")
	noExp.ExpiresAt = nil
	for _, tt := range []struct{ name, token string }{
		{"no token", ""},
		{"garbage", "not.a.token"},
		{"wrong signature", other},
		{"alg none", none},
		{"expired", hs(t, expired)},
		{"not yet valid", hs(t, early)},
		{"issued in the future", hs(t, future)},
		{"no expiry", hs(t, noExp)},
		{"missing sub", hs(t, claims("", "Alice"))},
		{"bad name", hs(t, claims("alice", "a\u202eb"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := base
			if tt.token != "" {
				u += "&token=" + url.QueryEscape(tt.token)
			}
			refused(t, u, nil, chat.CodeUnauthorized)
		})
	}
	if n := streamLen(t, cl, room); n != 0 {
		t.Fatalf("refused handshakes appended %d entries", n)
	}
	if n := cl.redis.Client().ZCard(context.Background(), "chat:{"+room+"}:online").Val(); n != 0 {
		t.Fatalf("refused handshakes recorded %d members", n)
	}

	good := hs(t, claims("alice", "Alice"))
	for _, place := range []struct {
		name   string
		url    string
		header http.Header
	}{
		{"query", base + "&token=" + good, nil},
		{"bearer header", base, http.Header{"Authorization": {"Bearer " + good}}},
		{"cookie", base, http.Header{"Cookie": {"chat_token=" + good}}},
	} {
		t.Run("token in "+place.name, func(t *testing.T) {
			c := clienttest.Dial(t, place.url, &client.Options{Header: place.header})
			hello, _, _ := clienttest.UntilReady(t, c)
			if hello.You != "Alice" || hello.UID != "alice" {
				t.Fatalf("hello %+v, want Alice signed in as alice", hello)
			}
			_ = c.Close()
		})
	}
}

// Events carry the user id; presence counts users, not tabs or names.
func TestSignedInPresence(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, jwtMode)
	room := uniqueRoom("who")
	at := func(i int, c token.Claims) *client.Conn {
		return dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[i].addr, room, hs(t, c)))
	}
	a1 := at(0, claims("alice", "Alice"))
	clienttest.UntilReady(t, a1)
	a2 := at(1, claims("alice", "Alice")) // a second tab, on the other replica
	clienttest.UntilReady(t, a2)
	s1 := at(0, claims("sam-1", "Sam"))
	clienttest.UntilReady(t, s1)
	s2 := at(1, claims("sam-2", "Sam"))
	_, _, ready := clienttest.UntilReady(t, s2)
	if fmt.Sprint(ready.Online) != "[Alice Sam Sam]" {
		t.Fatalf("online %v, want one Alice (two tabs) and two Sams (two users)", ready.Online)
	}
	if fmt.Sprint(ready.Users) != "[{alice Alice} {sam-1 Sam} {sam-2 Sam}]" {
		t.Fatalf("users %v", ready.Users)
	}
	id := clienttest.Send(t, a1, "hi")
	for {
		ev := clienttest.Next(t, s2)
		if ev.Type == "message" {
			if ev.ID != id || ev.From != "Alice" || ev.UID != "alice" {
				t.Fatalf("message %+v, want from Alice with uid alice", ev)
			}
			break
		}
		if ev.Type == "join" && ev.UID == "" {
			t.Fatalf("join without uid: %+v", ev)
		}
	}
}

// A token's rooms claim keeps its user out of other rooms.
func TestTokenRooms(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, jwtMode)
	r := cl.replicas[0]
	c := claims("alice", "Alice")
	c.Rooms = token.RoomList{"team-*", "lobby"}
	tok := hs(t, c)
	refused(t, fmt.Sprintf("ws://%s/ws?room=secret&token=%s", r.addr, tok), nil, chat.CodeForbidden)
	if n := streamLen(t, cl, "secret"); n != 0 {
		t.Fatalf("a forbidden join appended %d entries", n)
	}
	for _, room := range []string{"team-a", "lobby"} {
		ok := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", r.addr, room, tok))
		clienttest.UntilReady(t, ok)
	}
}

// A direct message between alice and bob works both ways across two
// replicas; carol cannot get in, and anonymous users have no DMs.
func TestDirectMessages(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, jwtMode)
	ws := func(i int, room, tok string) string {
		return fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[i].addr, url.QueryEscape(room), tok)
	}
	alice := dial(t, ws(0, "@bob", hs(t, claims("alice", "Alice"))))
	ha, _, _ := clienttest.UntilReady(t, alice)
	bob := dial(t, ws(1, "@alice", hs(t, claims("bob", "Bob"))))
	hb, _, _ := clienttest.UntilReady(t, bob)
	if ha.Room != hb.Room || !strings.HasPrefix(ha.Room, "dm-") || ha.With != "bob" || hb.With != "alice" {
		t.Fatalf("hello rooms %q (with %q) and %q (with %q): want one dm- room", ha.Room, ha.With, hb.Room, hb.With)
	}
	id := clienttest.Send(t, alice, "psst, bob")
	if ev := clienttest.Messages(t, bob, 1)[0]; ev.ID != id || ev.UID != "alice" {
		t.Fatalf("bob got %+v", ev)
	}
	back := clienttest.Send(t, bob, "hi alice")
	if evs := clienttest.Messages(t, alice, 2); evs[1].ID != back || evs[1].UID != "bob" {
		t.Fatalf("alice got %+v", evs)
	}
	before := streamLen(t, cl, ha.Room)
	// Carol knows the room's name: she still cannot enter it.
	refused(t, ws(0, ha.Room, hs(t, claims("carol", "Carol"))), nil, chat.CodeForbidden)
	// Her own @bob is a conversation of her own with bob.
	carol := dial(t, ws(1, "@bob", hs(t, claims("carol", "Carol"))))
	if hc, _, _ := clienttest.UntilReady(t, carol); hc.Room == ha.Room {
		t.Fatal("carol's DM with bob is alice's")
	}
	if n := streamLen(t, cl, ha.Room); n != before {
		t.Fatalf("carol's attempts changed alice and bob's room: %d entries, then %d", before, n)
	}
	anon := startReplica(t, testConfig(cl.redis.URL(), "anon", config.TailShared))
	refused(t, fmt.Sprintf("ws://%s/ws?room=@bob&name=eve", anon.addr), nil, chat.CodeForbidden)

	// Each user's list of conversations, most recent first.
	list := func(tok string) apiReply {
		return apiCall(t, http.MethodGet, fmt.Sprintf("http://%s/api/conversations?token=%s", cl.replicas[1].addr, tok), "", "")
	}
	if got := list(hs(t, claims("bob", "Bob"))); got.status != http.StatusOK || fmt.Sprint(got.body["conversations"]) != fmt.Sprintf("[map[room:%s with:carol] map[room:%s with:alice]]", chat.DirectRoom("bob", "carol"), ha.Room) {
		t.Fatalf("bob's conversations: %+v", got)
	}
	if got := apiCall(t, http.MethodGet, fmt.Sprintf("http://%s/api/conversations", cl.replicas[1].addr), "", ""); got.status != http.StatusUnauthorized || got.body["code"] != "unauthorized" {
		t.Fatalf("conversations without a token: %+v", got)
	}
}

// A token that expires during the connection ends it with token_expired
// and 1008; the Go client gets a fresh token, resumes, and loses nothing.
func TestTokenExpiryMidConnection(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); unlimited(c) })
	room := uniqueRoom("expiry")
	var mu sync.Mutex
	issued := 0
	fresh := func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		issued++
		c := claims("alice", "Alice")
		if issued == 1 {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(1500 * time.Millisecond))
		}
		return hs(t, c), nil
	}
	events := make(chan client.Event, 4096)
	clienttest.Dial(t, fmt.Sprintf("ws://%s/ws?room=%s", cl.replicas[0].addr, room),
		&client.Options{Token: fresh, Reconnect: true, MinBackoff: 20 * time.Millisecond, OnEvent: func(ev client.Event) { events <- ev }})
	talker := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[1].addr, room, hs(t, claims("bob", "Bob"))))
	clienttest.UntilReady(t, talker)
	var sent []string
	sawExpiry := false
	deadline := time.After(waitFor)
	for i := 0; len(sent) < 40; i++ {
		sent = append(sent, clienttest.Send(t, talker, fmt.Sprint("m", i)))
		time.Sleep(50 * time.Millisecond) // spread the sends across the expiry
	}
	var got []string
	for len(got) < len(sent) {
		select {
		case ev := <-events:
			switch {
			case ev.Type == "error" && ev.Code == "token_expired":
				sawExpiry = true
			case ev.Type == "message":
				got = append(got, ev.ID)
			}
		case <-deadline:
			t.Fatalf("got %d of %d messages (expiry seen: %v)", len(got), len(sent), sawExpiry)
		}
	}
	if !sawExpiry {
		t.Fatal("the token never expired during the connection")
	}
	if fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("across the expiry got\n%v\nwant\n%v", got, sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if issued < 2 {
		t.Fatalf("the client asked for %d tokens, want a fresh one after the expiry", issued)
	}
}

// Keys from a JWKS endpoint, and a rotation to a new key id.
func TestTokenFromJWKS(t *testing.T) {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	var mu sync.Mutex
	var keys []jwk
	add := func(kid string) ed25519.PrivateKey {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		mu.Lock()
		defer mu.Unlock()
		keys = []jwk{{"OKP", "Ed25519", base64.RawURLEncoding.EncodeToString(pub), kid, "EdDSA", "sig"}}
		return priv
	}
	k1 := add("k1")
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer jwks.Close()
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) { c.Auth, c.JWTJWKSURL = config.AuthJWT, jwks.URL })
	r := cl.replicas[0]
	room := uniqueRoom("jwks")
	first := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", r.addr, room, sign(t, jwt.SigningMethodEdDSA, k1, claims("alice", "Alice"), "k1")))
	if hello, _, _ := clienttest.UntilReady(t, first); hello.UID != "alice" {
		t.Fatalf("hello %+v", hello)
	}
	k2 := add("k2") // the provider rotates its key
	second := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", r.addr, room, sign(t, jwt.SigningMethodEdDSA, k2, claims("bob", "Bob"), "k2")))
	if hello, _, _ := clienttest.UntilReady(t, second); hello.UID != "bob" {
		t.Fatalf("after the rotation: hello %+v", hello)
	}
	// An HMAC token is never verified against a JWKS.
	refused(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", r.addr, room, hs(t, claims("eve", "Eve"))), nil, chat.CodeUnauthorized)
}

// With a public key the algorithm is pinned to it: an HS256 token signed
// with the public key's own bytes (the classic confusion) is refused.
func TestTokenPublicKeyPinsAlgorithm(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) { c.Auth, c.JWTPublicKey = config.AuthJWT, string(pub) })
	r := cl.replicas[0]
	room := uniqueRoom("rsa")
	ok := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", r.addr, room, sign(t, jwt.SigningMethodRS256, priv, claims("alice", "Alice"), "")))
	clienttest.UntilReady(t, ok)
	confused := sign(t, jwt.SigningMethodHS256, pub, claims("mallory", "Mallory"), "")
	refused(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", r.addr, room, confused), nil, chat.CodeUnauthorized)
}

// One user on two replicas shares one send budget.
func TestSharedSendLimit(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { jwtMode(c); c.Rate, c.Burst = 0.01, 4 })
	room := uniqueRoom("limit")
	tok := hs(t, claims("alice", "Alice"))
	a := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[0].addr, room, tok))
	b := dial(t, fmt.Sprintf("ws://%s/ws?room=%s&token=%s", cl.replicas[1].addr, room, tok))
	clienttest.UntilReady(t, a)
	clienttest.UntilReady(t, b)
	accepted, limited := 0, 0
	for i := range 12 {
		c := a
		if i%2 == 1 {
			c = b
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_, err := c.Send(ctx, fmt.Sprint("m", i))
		cancel()
		var se *client.ServerError
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &se) && se.Code == "rate_limited":
			limited++
		default:
			t.Fatal(err)
		}
	}
	// Two budgets of 4 would accept 8.
	if accepted != 4 || limited != 8 {
		t.Fatalf("accepted %d, limited %d: want one budget of 4 across both replicas", accepted, limited)
	}
}

// The connection past CHAT_MAX_CONNS_PER_IP gets 429 before the upgrade,
// and a client that sends half its headers is dropped at the header timeout.
func TestConnectionLimits(t *testing.T) {
	cfg := testConfig("", "limits", config.TailShared)
	cfg.MaxConnsPerIP, cfg.HTTPHeaderTimeout = 3, 500*time.Millisecond
	r := startReplica(t, cfg)
	for i := range 3 {
		clienttest.UntilReady(t, dial(t, r.wsURL("lobby", fmt.Sprint("u", i), "")))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, r.wsURL("lobby", "one-too-many", ""), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("connection 4: %v %v, want HTTP 429", resp, err)
	}

	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	_ = conn.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := io.ReadAll(bufio.NewReader(conn)); err != nil {
		t.Fatalf("half-sent headers: %v; want the server to close the socket", err)
	}
}

// gateway token prints a token the gateway accepts.
func TestMintCommand(t *testing.T) {
	cfg := config.Default()
	cfg.JWTSecret = testSecret
	var out, errs strings.Builder
	if err := mintMain(cfg, []string{"-sub", "alice", "-name", "Alice", "-rooms", "lobby, team-*", "-ttl", "10m"}, &out, &errs); err != nil {
		t.Fatalf("%v: %s", err, errs.String())
	}
	v, err := token.New(token.Options{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	who, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil || who.UserID != "alice" || who.Name != "Alice" || fmt.Sprint(who.Rooms) != "[lobby team-*]" || time.Until(who.Expires) > 10*time.Minute {
		t.Fatalf("minted token: %+v %v", who, err)
	}
	cfg.JWTSecret = ""
	if err := mintMain(cfg, []string{"-sub", "alice"}, &out, &errs); err == nil || !strings.Contains(err.Error(), "CHAT_JWT_SECRET") {
		t.Fatalf("without a secret: %v", err)
	}
}
