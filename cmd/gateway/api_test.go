package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
)

const testAPIKey = "test-api-key-0123456789"

type apiReply struct {
	status int
	body   map[string]any
}

func apiCall(t *testing.T, method, url, key, body string) apiReply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := apiReply{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %q", method, url, resp.StatusCode, raw)
	}
	return out
}

// The publish API: good, missing and wrong keys, bad bodies and limits,
// each with its status and error code, and nothing appended when refused.
func TestPublishAPI(t *testing.T) {
	cl := startCluster(t, 2, config.TailShared, func(c *config.Config) { c.APIKey, c.MaxText, c.Burst = testAPIKey, 100, 3 })
	room := uniqueRoom("api")
	watcher := dial(t, cl.replicas[1].wsURL(room, "watcher", ""))
	clienttest.UntilReady(t, watcher)
	post := fmt.Sprintf("http://%s/api/rooms/%s/messages", cl.replicas[0].addr, room)

	ok := apiCall(t, http.MethodPost, post, testAPIKey, `{"text":"deployed v1.2","from":"deploy-bot","nonce":"d1"}`)
	if ok.status != http.StatusCreated || ok.body["id"] == nil {
		t.Fatalf("publish: %+v", ok)
	}
	ev := clienttest.Messages(t, watcher, 1)[0]
	if ev.ID != ok.body["id"] || ev.From != "deploy-bot" || !ev.Bot || ev.Text != "deployed v1.2" {
		t.Fatalf("the watcher on the other replica got %+v", ev)
	}
	if again := apiCall(t, http.MethodPost, post, testAPIKey, `{"text":"deployed v1.2","from":"deploy-bot","nonce":"d1"}`); again.status != http.StatusCreated || again.body["id"] != ok.body["id"] || again.body["duplicate"] != true {
		t.Fatalf("the same nonce again: %+v", again)
	}
	before := streamLen(t, cl, room)
	for _, tt := range []struct {
		name, key, body string
		status          int
		code            string
	}{
		{"missing key", "", `{"text":"x","from":"bot"}`, http.StatusUnauthorized, "unauthorized"},
		{"wrong key", "wrong-key-0123456789", `{"text":"x","from":"bot"}`, http.StatusUnauthorized, "unauthorized"},
		{"not JSON", testAPIKey, `text=x`, http.StatusBadRequest, "bad_request"},
		{"no text", testAPIKey, `{"from":"bot"}`, http.StatusBadRequest, "bad_request"},
		{"bad sender", testAPIKey, `{"text":"x","from":"a\u202eb"}`, http.StatusBadRequest, "bad_name"},
		{"text too long", testAPIKey, `{"text":"` + strings.Repeat("x", 101) + `","from":"bot"}`, http.StatusRequestEntityTooLarge, "too_large"},
		{"body too large", testAPIKey, `{"text":"` + strings.Repeat("x", 70000) + `","from":"bot"}`, http.StatusRequestEntityTooLarge, "too_large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := apiCall(t, http.MethodPost, post, tt.key, tt.body)
			if got.status != tt.status || got.body["code"] != tt.code || got.body["message"] == "" {
				t.Fatalf("%d %+v, want %d %s", got.status, got.body, tt.status, tt.code)
			}
		})
	}
	if bad := apiCall(t, http.MethodPost, fmt.Sprintf("http://%s/api/rooms/Bad%%20Room/messages", cl.replicas[0].addr), testAPIKey, `{"text":"x","from":"bot"}`); bad.status != http.StatusBadRequest || bad.body["code"] != "bad_room" {
		t.Fatalf("bad room: %+v", bad)
	}
	if n := streamLen(t, cl, room); n != before {
		t.Fatalf("refused requests appended %d entries", n-before)
	}
	// The sender's budget: burst 3, the first post and its repeat used 2.
	statuses := []int{}
	for i := range 3 {
		statuses = append(statuses, apiCall(t, http.MethodPost, post, testAPIKey, fmt.Sprintf(`{"text":"m%d","from":"chatty-bot"}`, i)).status)
	}
	if fmt.Sprint(statuses) != "[201 201 201]" {
		t.Fatalf("a new sender's first three: %v", statuses)
	}
	if limited := apiCall(t, http.MethodPost, post, testAPIKey, `{"text":"m3","from":"chatty-bot"}`); limited.status != http.StatusTooManyRequests || limited.body["code"] != "rate_limited" {
		t.Fatalf("over the budget: %+v", limited)
	}

	// Without CHAT_API_KEY the API is not there.
	off := startReplica(t, testConfig(cl.redis.URL(), "off", config.TailShared))
	if got := apiCall(t, http.MethodPost, fmt.Sprintf("http://%s/api/rooms/%s/messages", off.addr, room), testAPIKey, `{"text":"x","from":"bot"}`); got.status != http.StatusNotFound || got.body["code"] != "not_found" {
		t.Fatalf("API off: %+v", got)
	}
}

// History pages, newest first, each page's next continuing where it ended.
func TestHistoryAPI(t *testing.T) {
	cl := startCluster(t, 1, config.TailShared, func(c *config.Config) { c.APIKey = testAPIKey; unlimited(c) })
	r := cl.replicas[0]
	room := uniqueRoom("history")
	c := dial(t, r.wsURL(room, "ann", ""))
	clienttest.UntilReady(t, c)
	var ids []string
	for i := range 7 {
		ids = append(ids, clienttest.Send(t, c, fmt.Sprint("m", i)))
	}
	url := fmt.Sprintf("http://%s/api/rooms/%s/messages?limit=3", r.addr, room)
	var got []string
	pages := 0
	for next := ""; ; pages++ {
		u := url
		if next != "" {
			u += "&before=" + next
		}
		page := apiCall(t, http.MethodGet, u, testAPIKey, "")
		if page.status != http.StatusOK {
			t.Fatalf("GET %s: %+v", u, page)
		}
		for _, m := range page.body["messages"].([]any) {
			got = append(got, m.(map[string]any)["id"].(string))
		}
		n, _ := page.body["next"].(string)
		if n == "" {
			break
		}
		next = n
	}
	want := make([]string, 0, len(ids))
	for i := len(ids) - 1; i >= 0; i-- {
		want = append(want, ids[i])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages < 2 {
		t.Fatalf("history over %d pages:\n%v\nwant newest first\n%v", pages+1, got, want)
	}
	for _, bad := range []string{"?limit=0", "?limit=500", "?before=yesterday"} {
		if got := apiCall(t, http.MethodGet, fmt.Sprintf("http://%s/api/rooms/%s/messages%s", r.addr, room, bad), testAPIKey, ""); got.status != http.StatusBadRequest {
			t.Fatalf("%s: %+v", bad, got)
		}
	}
	if got := apiCall(t, http.MethodGet, fmt.Sprintf("http://%s/api/rooms/%s/messages", r.addr, room), "", ""); got.status != http.StatusUnauthorized {
		t.Fatalf("history without the key: %+v", got)
	}
}
