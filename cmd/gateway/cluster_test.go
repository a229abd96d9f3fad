package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamchat/streamchat/pkg/client/clienttest"
	"github.com/streamchat/streamchat/pkg/config"
	"github.com/streamchat/streamchat/pkg/redistest"
)

// Replicas on a real three-master Redis Cluster: rooms spread over every
// shard (the {room} hash tag keeps each room's keys on one), and the
// multi-replica guarantees hold there too.
func TestRedisCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = "redis://" + n
	}
	ctx := context.Background()
	var replicas []*replica
	for i := range 3 {
		cfg := testConfig(strings.Join(urls, ","), fmt.Sprintf("%c", 'A'+i), config.TailShared)
		unlimited(&cfg)
		replicas = append(replicas, startReplica(t, cfg))
	}

	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
	defer c.Close()
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	masterOf := func(key string) string {
		slot, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) {
				return r.Nodes[0].Addr
			}
		}
		t.Fatalf("slot %d has no master", slot)
		return ""
	}
	// Rooms land on shards by hash; pick names until every master holds
	// three, so the check below does not depend on luck.
	var names []string
	chosen := map[string]int{}
	for len(chosen) < 3 || chosen[nodes[0]] < 3 || chosen[nodes[1]] < 3 || chosen[nodes[2]] < 3 {
		room := uniqueRoom("cluster")
		if m := masterOf("chat:{" + room + "}:log"); chosen[m] < 3 {
			chosen[m]++
			names = append(names, room)
		}
	}
	for i, room := range names {
		a := dial(t, replicas[i%3].wsURL(room, "ann", ""))
		b := dial(t, replicas[(i+1)%3].wsURL(room, "bob", ""))
		clienttest.UntilReady(t, a)
		clienttest.UntilReady(t, b)
		id := clienttest.Send(t, a, "hello "+room)
		if got := clienttest.Messages(t, b, 1)[0]; got.ID != id || got.Text != "hello "+room {
			t.Fatalf("room %s: bob got %+v", room, got)
		}
		// Typing, an edit and a reaction travel on the room's shard too.
		// (After a message has come through: a notice rung before bob's
		// replica subscribed to the room's bell would be gone, as pub/sub
		// keeps nothing.)
		if err := a.Typing(ctx); err != nil {
			t.Fatal(err)
		}
		if ev := clienttest.NextOf(t, b, "typing"); ev.From != "ann" || ev.Room != room {
			t.Fatalf("room %s: typing %+v", room, ev)
		}
		must(t, a, map[string]any{"type": "edit", "id": id, "text": "hello, " + room})
		must(t, b, map[string]any{"type": "react", "id": id, "emoji": "👍", "on": true})
		if ev := clienttest.NextOf(t, b, "edit"); ev.Ref != id {
			t.Fatalf("room %s: edit %+v", room, ev)
		}
		if ev := clienttest.NextOf(t, b, "react"); ev.Ref != id || ev.Count != "1" {
			t.Fatalf("room %s: reaction %+v", room, ev)
		}
		// Resume on a third replica, across shards, loses nothing.
		last := id
		b.CloseNow()
		missed := clienttest.Send(t, a, "while bob was away")
		back := dial(t, replicas[(i+2)%3].wsURL(room, "bob", last))
		hello, entries, _ := clienttest.UntilReady(t, back)
		if i == 0 {
			// A fresh joiner's replay shows the edit and the reaction.
			fresh := dial(t, replicas[(i+2)%3].wsURL(room, "cy", ""))
			_, replay, _ := clienttest.UntilReady(t, fresh)
			if len(replay) < 1 || replay[0].Text != "hello, "+room || len(replay[0].Reactions) != 1 {
				t.Fatalf("room %s: replay on the cluster %+v", room, replay)
			}
		}
		var got []string
		for _, ev := range entries {
			if ev.Type == "message" {
				got = append(got, ev.ID)
			}
		}
		if !hello.Resumed || fmt.Sprint(got) != fmt.Sprint([]string{missed}) {
			t.Fatalf("room %s: resume on the cluster: resumed=%v got %v want [%s]", room, hello.Resumed, got, missed)
		}
	}

	// Each room's keys share a slot, and its stream sits on that slot's master.
	perNode := map[string]int{}
	for _, room := range names {
		log, online := "chat:{"+room+"}:log", "chat:{"+room+"}:online"
		s1, err1 := c.ClusterKeySlot(ctx, log).Result()
		s2, err2 := c.ClusterKeySlot(ctx, online).Result()
		if err1 != nil || err2 != nil || s1 != s2 {
			t.Fatalf("room %s: keys in slots %d and %d (%v %v)", room, s1, s2, err1, err2)
		}
		for _, r := range slots {
			if int64(r.Start) <= s1 && s1 <= int64(r.End) {
				node := r.Nodes[0].Addr
				perNode[node]++
				direct := redis.NewClient(&redis.Options{Addr: node})
				n, err := direct.Exists(ctx, log).Result()
				direct.Close()
				if err != nil || n != 1 {
					t.Fatalf("room %s: stream not on its slot's master %s (%v)", room, node, err)
				}
			}
		}
	}
	if len(perNode) != 3 {
		t.Fatalf("rooms per master = %v: want every shard to hold some", perNode)
	}
	t.Logf("rooms per master: %v", perNode)
}

// Through a Sentinel: go-redis asks it for the master and talks to that.
func TestRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "chatmaster")
	cfg := testConfig(sentinel.URL(), "S", config.TailShared)
	cfg.RedisSentinelMaster = "chatmaster"
	r := startReplica(t, cfg)
	room := uniqueRoom("sentinel")
	a := dial(t, r.wsURL(room, "ann", ""))
	b := dial(t, r.wsURL(room, "bob", ""))
	clienttest.UntilReady(t, a)
	clienttest.UntilReady(t, b)
	id := clienttest.Send(t, a, "via sentinel")
	if got := clienttest.Messages(t, b, 1)[0]; got.ID != id {
		t.Fatalf("bob got %+v", got)
	}
	if n, err := master.Client().Exists(context.Background(), "chat:{"+room+"}:log").Result(); err != nil || n != 1 {
		t.Fatalf("the room's stream is not on the master: %d, %v", n, err)
	}
}
