// streamchat browser client. Everything from the network reaches the page
// through textContent, never as HTML.
const $ = (id) => document.getElementById(id);
const state = { ws: null, room: "", name: "", lastId: "", retry: 0, timer: 0, online: new Map(), pending: new Map(), queue: [] };

function setStatus(text, live) {
  $("status").textContent = text;
  $("status").className = live ? "live" : "";
}

function addLine(cls, from, text, ts) {
  const li = document.createElement("li");
  li.className = cls;
  if (ts) {
    const t = document.createElement("span");
    t.className = "time";
    t.textContent = new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(t);
  }
  if (from) {
    const f = document.createElement("span");
    f.className = "from";
    f.textContent = from;
    li.append(f);
  }
  li.append(document.createTextNode(text));
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
  return li;
}

function renderOnline() {
  const ul = $("online");
  ul.replaceChildren();
  for (const name of [...state.online.keys()].sort()) {
    const li = document.createElement("li");
    li.textContent = name;
    ul.append(li);
  }
}

function onEvent(ev) {
  switch (ev.type) {
    case "hello":
      if (!ev.resumed) { $("messages").replaceChildren(); state.lastId = ""; }
      break;
    case "ready":
      state.online = new Map((ev.online || []).map((n) => [n, 1]));
      renderOnline();
      if (!state.lastId) state.lastId = ev.cursor;
      setStatus("live", true);
      state.retry = 0;
      $("text").disabled = false;
      $("sendButton").disabled = false;
      flushQueue();
      break;
    case "message": {
      state.lastId = ev.id;
      const mine = ev.nonce && state.pending.get(ev.nonce);
      if (mine) { mine.className = ""; state.pending.delete(ev.nonce); return; }
      addLine("", ev.from, ev.text, ev.ts);
      break;
    }
    case "join":
      state.lastId = ev.id;
      state.online.set(ev.from, (state.online.get(ev.from) || 0) + 1);
      renderOnline();
      addLine("notice", "", ev.from + " joined", ev.ts);
      break;
    case "leave": {
      state.lastId = ev.id;
      const n = (state.online.get(ev.from) || 1) - 1;
      if (n > 0) state.online.set(ev.from, n); else state.online.delete(ev.from);
      renderOnline();
      addLine("notice", "", ev.from + " left", ev.ts);
      break;
    }
    case "ack":
      break;
    case "error": {
      const li = ev.nonce && state.pending.get(ev.nonce);
      if (li) { li.className = "failed"; state.pending.delete(ev.nonce); }
      addLine("notice", "", "error: " + ev.message);
      break;
    }
  }
}

function connect() {
  clearTimeout(state.timer);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = new URLSearchParams({ room: state.room, name: state.name });
  if (state.lastId) q.set("since", state.lastId);
  setStatus(state.retry ? "reconnecting" : "connecting", false);
  const ws = new WebSocket(`${proto}//${location.host}/ws?${q}`);
  state.ws = ws;
  ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    $("sendButton").disabled = true;
    if (e.code === 1008) { setStatus("offline: " + (e.reason || "refused"), false); return; }
    // Exponential backoff with jitter, capped at 30 s.
    const delay = Math.min(30000, 500 * 2 ** state.retry) * (0.5 + Math.random() / 2);
    state.retry++;
    setStatus(`reconnecting in ${Math.ceil(delay / 1000)}s`, false);
    state.timer = setTimeout(connect, delay);
  };
}

function flushQueue() {
  while (state.queue.length && state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(state.queue.shift()));
  }
}

function send(text) {
  const nonce = crypto.randomUUID();
  const li = addLine("pending", state.name, text, new Date().toISOString());
  state.pending.set(nonce, li);
  state.queue.push({ type: "message", text, nonce });
  flushQueue();
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  state.name = $("name").value.trim();
  state.room = $("room").value.trim() || "lobby";
  localStorage.setItem("username", state.name);
  document.cookie = "username=" + encodeURIComponent(state.name) + "; path=/; SameSite=Strict";
  location.hash = "#/r/" + state.room;
  state.lastId = "";
  state.retry = 0;
  if (state.ws) { const old = state.ws; state.ws = null; old.close(1000); }
  $("messages").replaceChildren();
  connect();
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  send(text);
});

$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("send").requestSubmit(); }
});

$("name").value = localStorage.getItem("username") || "";
const m = location.hash.match(/^#\/r\/([a-z0-9][a-z0-9_-]{0,63})$/);
if (m) $("room").value = m[1];
