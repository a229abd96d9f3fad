// streamchat browser client. Text from the network only ever reaches the
// page through textContent or as a checked link href, never as HTML.
import { RoomConnection, isEntry } from "./conn.js";

const $ = (id) => document.getElementById(id);
const GROUP_GAP_MS = 5 * 60 * 1000;
const RECENT_MAX = 6;
// A send the server could not store ("unavailable") is tried again, with
// the same nonce, after 1, 2, 4, 8 and 16 s, then offered to retry by hand.
const UNAVAILABLE_RETRIES = 5;

const ui = {
  messages: $("messages"), online: $("online"), onlineCount: $("online-count"),
  status: $("status"), text: $("text"), send: $("send-button"), counter: $("counter"),
  jump: $("jump"), name: $("name"), room: $("room"), recent: $("recent"), roomTitle: $("room-title"),
  dms: $("dms"), dmList: $("dm-list"), nameField: $("name-field"),
  typing: $("typing"), rooms: $("rooms"), roomList: $("room-list"), notify: $("notify"),
};
// Typing notices: the server passes at most one per 3 s per user, so the
// page sends one every 3.5 s while typing (a notice that reached the server
// a little early would be dropped); a notice shows for 5 s unless its
// author's message comes, which covers the gap between two.
const TYPING_EVERY_MS = 3500;
const TYPING_SHOWN_MS = 5000;
// The emoji offered by a message's reaction button; any other can come
// from another client.
const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
// The room list is polled while the tab is visible, and less often when not.
const ROOMS_EVERY_MS = 5000;

// Signed in: a token from the page's ?token= (kept for this tab), or the
// chat_token cookie that the embedding site sets (sent by the browser
// itself). The server then says who we are in hello.
const token = takeToken();
let conn = null;
let me = "";
let myUid = "";
let maxText = 4000;
let replaying = false;
let presenceLive = false; // join/leave count only after our own join
const online = new Map(); // "u:UID" or "n:NAME" -> { name, uid, n }
const pending = new Map(); // nonce -> { li, text, acked, sentOn, retries }
const shown = new Set(); // stream ids already on the page
let unseen = 0;
let historyMore = true; // older messages may exist before the first shown
let historyLoading = false;
const typers = new Map(); // personKey -> { name, until }
let typingSentAt = 0;
const myNonces = new Set(); // nonces of this page's reactions, edits and deletes
let hiddenUnread = 0; // messages of others that came while the tab was hidden
let otherUnread = 0; // unread in the user's other rooms (room list)
let marked = ""; // the read marker as last sent
let markTimer = 0;
let markedAt = 0; // when the marker was last sent

// ---------- rendering ----------

function atBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
}

function append(node) {
  const stick = atBottom();
  ui.messages.append(node);
  if (stick) {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  } else if (node.classList.contains("msg") && !replaying) {
    unseen++;
    ui.jump.textContent = `${unseen} new message${unseen === 1 ? "" : "s"} ↓`;
    ui.jump.hidden = false;
  }
}

function divider(label) {
  const li = document.createElement("li");
  li.className = "divider";
  li.setAttribute("role", "separator");
  li.textContent = label;
  append(li);
}

function notice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  append(li);
}

// mentionRe matches a mention of this user: @name or @uid, not inside a
// longer word.
function mentionRe() {
  const alts = [me, myUid].filter(Boolean).map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return alts.length ? new RegExp(`@(?:${alts.join("|")})(?![\\p{L}\\p{N}_])`, "giu") : null;
}

function mentionsMe(text) {
  const re = mentionRe();
  return Boolean(re && text && re.test(text));
}

// appendText appends text to parent, with mentions of this user marked.
function appendText(parent, text) {
  const re = mentionRe();
  let last = 0;
  if (re) {
    for (const m of text.matchAll(re)) {
      parent.append(document.createTextNode(text.slice(last, m.index)));
      const mark = document.createElement("mark");
      mark.className = "mention";
      mark.textContent = m[0];
      parent.append(mark);
      last = m.index + m[0].length;
    }
  }
  parent.append(document.createTextNode(text.slice(last)));
}

// linkify appends text to parent, turning http(s) URLs into safe links.
function linkify(parent, text) {
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0;
  for (const m of text.matchAll(re)) {
    appendText(parent, text.slice(last, m.index));
    let href = m[0].replace(/[.,;:!?)\]]+$/, "");
    let url = null;
    try { url = new URL(href); } catch { url = null; }
    if (url && (url.protocol === "http:" || url.protocol === "https:")) {
      const a = document.createElement("a");
      a.href = url.href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      a.textContent = href;
      parent.append(a);
      last = m.index + href.length;
    } else {
      last = m.index;
    }
  }
  appendText(parent, text.slice(last));
}

function timeOf(ts) {
  const d = ts ? new Date(ts) : new Date();
  const t = document.createElement("time");
  t.dateTime = d.toISOString();
  t.title = d.toLocaleString();
  t.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return t;
}

// messageItem builds one message; consecutive messages of one sender within
// a few minutes are grouped under one name and time.
function messageItem(from, uid, text, ts, replay, fill) {
  const mine = uid ? uid === myUid : from === me;
  const li = document.createElement("li");
  li.className = "msg";
  if (mine) li.classList.add("mine");
  if (replay) li.classList.add("replay");
  li.dataset.from = from;
  li.dataset.ts = String(ts ? Date.parse(ts) : Date.now());
  const prev = ui.messages.lastElementChild;
  if (prev && prev.classList.contains("msg") && prev.dataset.from === from &&
      Number(li.dataset.ts) - Number(prev.dataset.ts) < GROUP_GAP_MS) {
    li.classList.add("continued");
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "from";
  name.textContent = from;
  meta.append(name);
  if (mine) {
    const you = document.createElement("span");
    you.className = "you";
    you.textContent = "(you)";
    meta.append(you);
  }
  meta.append(timeOf(ts));
  const body = document.createElement("div");
  body.className = "body";
  if (fill) fill(body); else linkify(body, text);
  if (!mine && !fill && mentionsMe(text)) li.classList.add("mentioned");
  li.append(meta, body);
  return li;
}

// fileBody fills a file entry's body: an image inline, its space reserved
// from the width and height the server read, or a download link with the
// name and size. Only the server's own /files/ paths are ever used.
function fileBody(ev) {
  return (body) => {
    const url = typeof ev.url === "string" && ev.url.startsWith("/files/") ? ev.url : "";
    const name = ev.name || "file";
    const w = Number(ev.width), h = Number(ev.height);
    if (url && /^image\/(png|jpeg|gif|webp)$/.test(ev.mime) && w > 0 && h > 0) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = url;
      img.alt = name;
      img.width = w;
      img.height = h;
      img.loading = "lazy";
      img.addEventListener("error", () => fig.replaceWith(expired(name)), { once: true });
      const cap = document.createElement("figcaption");
      cap.textContent = name;
      fig.append(img, cap);
      body.append(fig);
      return;
    }
    const a = document.createElement("a");
    a.className = "file";
    a.textContent = name;
    if (url) { a.href = url; a.download = name; }
    const size = document.createElement("span");
    size.className = "size";
    size.textContent = ` (${humanSize(Number(ev.size) || 0)})`;
    body.append(a, size);
    // A link to an expired file says so when followed: check it once.
    if (url) fetch(url, { method: "HEAD" }).then((r) => { if (r.status === 404) a.replaceWith(expired(name)); }, () => {});
  };
}

function expired(name) {
  const s = document.createElement("span");
  s.className = "expired";
  s.textContent = `${name}: file expired`;
  return s;
}

function humanSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ---------- days ----------

function dayLabel(ms) {
  const d = new Date(ms);
  const today = new Date();
  const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diff = Math.round((start(today) - start(d)) / 86400000);
  if (diff === 0) return "Today";
  if (diff === 1) return "Yesterday";
  return d.toLocaleDateString(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
}

function dayOf(ms) { const d = new Date(ms); return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`; }

// redrawDays puts a date divider before the first message of each day.
function redrawDays() {
  for (const d of ui.messages.querySelectorAll(".divider.day")) d.remove();
  let last = "";
  for (const li of ui.messages.querySelectorAll(".msg")) {
    const ms = Number(li.dataset.ts);
    const day = dayOf(ms);
    if (day !== last) {
      const div = document.createElement("li");
      div.className = "divider day";
      div.setAttribute("role", "separator");
      div.textContent = dayLabel(ms);
      li.before(div);
      last = day;
    }
  }
}

function personKey(name, uid) { return uid ? `u:${uid}` : `n:${name}`; }

function renderOnline() {
  ui.online.replaceChildren();
  const people = [...online.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const p of people) {
    const li = document.createElement("li");
    const self = p.uid ? p.uid === myUid : p.name === me;
    li.textContent = self ? `${p.name} (you)` : p.name;
    li.dataset.name = p.name;
    if (p.uid) li.dataset.uid = p.uid;
    if (p.uid && !self && myUid) {
      // Signed in: talk to them in private.
      const b = document.createElement("button");
      b.type = "button";
      b.className = "dm";
      b.textContent = "Message";
      b.setAttribute("aria-label", `Message ${p.name} privately`);
      b.addEventListener("click", () => { location.hash = roomHash(`@${p.uid}`); });
      li.append(" ", b);
    }
    ui.online.append(li);
  }
  ui.onlineCount.textContent = `(${people.length})`;
}

// renderConversations lists the signed-in user's direct-message partners.
function renderConversations(list) {
  ui.dms.hidden = !myUid;
  ui.dmList.replaceChildren();
  for (const c of list) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = roomHash(`@${c.with}`);
    a.textContent = `@${c.with}`;
    a.dataset.with = c.with;
    li.append(a);
    ui.dmList.append(li);
  }
}

// userAPI fetches one of the signed-in user's own resources; null when
// signed out, offline or refused (the next poll tries again).
async function userAPI(path) {
  if (!myUid) return null;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const r = await fetch(path, { headers, credentials: "same-origin" });
    return r.ok ? await r.json() : null;
  } catch { return null; }
}

async function loadConversations() {
  const body = await userAPI("/api/conversations");
  if (body) renderConversations(body.conversations || []);
}

function setStatus(state, detail) {
  ui.status.dataset.state = state;
  ui.status.textContent = state === "reconnecting" && detail ? `reconnecting in ${detail}s`
    : state === "offline" && detail ? `offline: ${detail}` : state;
  const usable = state === "live" || state === "reconnecting";
  ui.text.disabled = !usable && state !== "connecting";
  updateCounter();
}

function updateCounter() {
  const n = [...ui.text.value].length;
  const near = n > maxText * 0.8;
  ui.counter.textContent = near ? String(maxText - n) : "";
  ui.counter.classList.toggle("over", n > maxText);
  ui.send.disabled = ui.text.disabled || n === 0 || n > maxText;
}

// ---------- protocol events ----------

function clearHistory() {
  // Keep messages that are still on their way; drop everything else.
  for (const li of [...ui.messages.children]) {
    if (!li.classList.contains("pending")) li.remove();
  }
  shown.clear();
}

function onEvent(ev) {
  if (isEntry(ev)) {
    if (shown.has(ev.id)) return; // never show an entry twice
    shown.add(ev.id);
  }
  switch (ev.type) {
    case "hello":
      maxText = ev.limits?.max_text || maxText;
      if (ev.uid) {
        me = ev.you;
        myUid = ev.uid;
        ui.roomTitle.textContent = ev.with ? `@${ev.with}` : `#${ev.room}`;
        updateTitle();
        loadConversations();
        loadRooms();
      }
      presenceLive = false;
      if (!ev.resumed) {
        clearHistory();
        replaying = true;
      }
      break;
    case "ready": {
      online.clear();
      const users = new Map((ev.users || []).map((u) => [u.name, []]));
      for (const u of ev.users || []) users.get(u.name).push(u.uid);
      for (const n of ev.online || []) {
        const uid = users.get(n)?.shift() || "";
        online.set(personKey(n, uid), { name: n, uid, n: 1 });
      }
      renderOnline();
      if (replaying && ui.messages.querySelector(".msg.replay")) divider("now");
      if (replaying && ev.read) newMessagesLine(ev.read);
      replaying = false;
      if (ev.read) marked = ev.read;
      resendUnacknowledged();
      markRead();
      break;
    }
    case "message":
    case "file": {
      const p = ev.nonce && (ev.uid ? ev.uid === myUid : ev.from === me) ? pending.get(ev.nonce) : null;
      if (p) {
        pending.delete(ev.nonce);
        p.li.classList.remove("pending", "failed");
        p.li.dataset.id = ev.id;
        p.li.querySelector(".failure")?.remove();
        if (ev.type === "file") {
          const body = p.li.querySelector(".body");
          body.replaceChildren();
          fileBody(ev)(body);
        }
        decorate(p.li, ev);
        markRead();
        return;
      }
      stopTyping(personKey(ev.from, ev.uid));
      if (!ev.replay) arrived(ev);
      if (replaying && !ui.messages.querySelector(".msg.replay")) divider("earlier messages");
      const li = entryItem(ev);
      append(li);
      redrawDays();
      markRead();
      break;
    }
    case "typing":
      if (ev.uid ? ev.uid !== myUid : ev.from !== me) startTyping(ev);
      break;
    case "edit": {
      const li = msgById(ev.ref);
      if (li) setText(li, ev.text, ev.ts);
      break;
    }
    case "delete": {
      const li = msgById(ev.ref);
      if (li) tombstone(li);
      break;
    }
    case "react": {
      const li = msgById(ev.ref);
      if (!li || !li.reactions) break;
      const r = li.reactions.get(ev.emoji) || { count: 0, me: false };
      r.count = Number(ev.count) || 0;
      if (ev.uid ? ev.uid === myUid : myNonces.has(ev.nonce)) r.me = ev.on === "true";
      if (r.count > 0) li.reactions.set(ev.emoji, r); else li.reactions.delete(ev.emoji);
      renderReactions(li);
      break;
    }
    case "history": {
      historyLoading = false;
      historyMore = ev.more;
      const m = ui.messages;
      const fromBottom = m.scrollHeight - m.scrollTop;
      const first = m.querySelector(".msg");
      for (const e of ev.entries || []) {
        if (shown.has(e.id) || (e.type !== "message" && e.type !== "file")) continue;
        shown.add(e.id);
        const li = entryItem(e);
        if (first) first.before(li); else m.append(li);
      }
      redrawDays();
      m.scrollTop = m.scrollHeight - fromBottom; // the reader stays where they were
      break;
    }
    case "join":
    case "leave":
      if (presenceLive) {
        const key = personKey(ev.from, ev.uid);
        const p = online.get(key) || { name: ev.from, uid: ev.uid || "", n: 0 };
        p.n += ev.type === "join" ? 1 : -1;
        if (p.n > 0) online.set(key, p); else online.delete(key);
        renderOnline();
      } else if (ev.type === "join" && (ev.uid ? ev.uid === myUid : ev.from === me) && conn?.live) {
        presenceLive = true; // ready.online already counts us and everyone before us
      }
      // Not one's own: each reconnect would add another "you joined".
      if (!ev.replay && conn?.live && !(ev.uid ? ev.uid === myUid : ev.from === me)) {
        notice(`${ev.from} ${ev.type === "join" ? "joined" : "left"}`);
      }
      break;
    case "ack": {
      const p = pending.get(ev.nonce);
      if (p) p.acked = true;
      break;
    }
    case "error": {
      if (ev.nonce && myNonces.has(ev.nonce)) {
        notice(`⚠ ${ev.message}`);
        break;
      }
      const p = ev.nonce ? pending.get(ev.nonce) : null;
      if (p && ev.code === "unavailable" && p.retries < UNAVAILABLE_RETRIES) {
        const nonce = ev.nonce;
        const delay = 1000 * 2 ** p.retries++;
        setTimeout(() => { if (pending.get(nonce) === p) resend(p, nonce); }, delay);
      } else if (p) fail(ev.nonce, p, ev.message, ev.code);
      else notice(`⚠ ${ev.message}`);
      break;
    }
  }
}

// entryItem renders a stream entry (message or file).
function entryItem(ev) {
  const li = ev.type === "file"
    ? messageItem(ev.from, ev.uid, "", ev.ts, ev.replay, fileBody(ev))
    : messageItem(ev.from, ev.uid, ev.text || "", ev.ts, ev.replay);
  li.dataset.id = ev.id;
  decorate(li, ev);
  return li;
}

// loadOlder asks for the page of history before the oldest message shown.
function loadOlder() {
  if (historyLoading || !historyMore || !conn?.live) return;
  const first = ui.messages.querySelector(".msg[data-id]");
  if (!first) return;
  historyLoading = true;
  conn.command({ type: "history", before: first.dataset.id, limit: 50, nonce: randomId() });
}

// fail marks an own message as not sent, with the reason and a Retry in
// the message itself (a grouped message's header is hidden).
function fail(nonce, p, why, code) {
  p.li.classList.remove("pending");
  p.li.classList.add("failed");
  p.li.title = why;
  p.li.querySelector(".failure")?.remove();
  const box = document.createElement("div");
  box.className = "failure";
  const reason = document.createElement("span");
  reason.className = "reason";
  reason.textContent = code === "rate_limited" ? "sending too fast — retry" : why;
  const b = document.createElement("button");
  b.type = "button";
  b.className = "retry";
  b.textContent = "Retry";
  b.setAttribute("aria-label", `Retry sending: ${(p.text || p.file?.name || "").slice(0, 40)}`);
  b.addEventListener("click", () => {
    box.remove();
    p.li.classList.remove("failed");
    p.li.classList.add("pending");
    p.retries = 0;
    resend(p, nonce);
  });
  box.append(reason, " ", b);
  p.li.append(box);
}

function resend(p, nonce) {
  if (p.file) conn.sendFile(p.file.meta, p.file.bytes, nonce);
  else conn.send(p.text, nonce);
}

// Messages sent on a connection that dropped before they were acknowledged
// are sent again (same nonce) unless the resumed stream already showed them.
function resendUnacknowledged() {
  for (const [nonce, p] of pending) {
    if (p.acked || !p.li.classList.contains("pending") || p.sentOn === conn.ws) continue;
    const queued = p.sentOn === null; // still in the outbox, which is flushed now
    p.sentOn = conn.ws;
    if (!queued) resend(p, nonce);
  }
}

// ---------- typing, edits, deletes, reactions ----------

function msgById(id) {
  return typeof id === "string" ? ui.messages.querySelector(`.msg[data-id="${CSS.escape(id)}"]`) : null;
}

function isMine(li) { return li.classList.contains("mine"); }

// decorate gives a stored message its state (edited, deleted, reactions,
// as a replay or history page says) and its actions.
function decorate(li, ev) {
  if (li.reactions) return;
  li.reactions = new Map();
  for (const r of Array.isArray(ev.reactions) ? ev.reactions : []) {
    if (typeof r.emoji === "string" && r.count > 0) li.reactions.set(r.emoji, { count: Number(r.count), me: Boolean(r.me) });
  }
  const bar = document.createElement("div");
  bar.className = "reactions";
  li.append(bar);
  const actions = document.createElement("div");
  actions.className = "actions";
  const react = button("☺+", "react", "Add a reaction");
  react.addEventListener("click", () => togglePicker(li));
  actions.append(react);
  if (isMine(li)) {
    if (ev.type === "message") {
      const edit = button("Edit", "edit", "Edit this message");
      edit.addEventListener("click", () => startEdit(li));
      actions.append(edit);
    }
    const del = button("Delete", "delete", "Delete this message");
    del.addEventListener("click", () => {
      // The first click asks; a second within 4 s deletes.
      if (!del.classList.contains("confirm")) {
        del.classList.add("confirm");
        del.textContent = "Delete?";
        setTimeout(() => { del.classList.remove("confirm"); del.textContent = "Delete"; }, 4000);
        return;
      }
      command({ type: "delete", id: li.dataset.id });
    });
    actions.append(del);
  }
  li.append(actions);
  if (ev.deleted) tombstone(li);
  else if (ev.edited_at) markEdited(li, ev.edited_at);
  renderReactions(li);
}

function button(text, cls, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.title = label;
  return b;
}

// command sends an edit, delete or reaction; its nonce marks the entry
// that comes back as this page's own.
function command(frame) {
  const nonce = randomId();
  myNonces.add(nonce);
  conn?.command({ ...frame, nonce });
}

function setText(li, text, ts) {
  if (li.classList.contains("deleted")) return;
  const body = li.querySelector(".body");
  body.replaceChildren();
  linkify(body, text);
  li.classList.toggle("mentioned", !isMine(li) && mentionsMe(text));
  markEdited(li, ts);
}

function markEdited(li, ts) {
  li.querySelector(".edited")?.remove();
  const e = document.createElement("span");
  e.className = "edited";
  e.textContent = " (edited)";
  if (ts) e.title = `edited ${new Date(ts).toLocaleString()}`;
  li.querySelector(".body").append(e);
}

// tombstone leaves where a deleted message was, and nothing of it.
function tombstone(li) {
  li.classList.add("deleted");
  li.classList.remove("mentioned");
  const body = li.querySelector(".body");
  body.replaceChildren();
  body.textContent = "message deleted";
  li.reactions?.clear();
  li.querySelector(".reactions")?.replaceChildren();
  li.querySelector(".actions")?.remove();
  li.querySelector(".edit-form")?.remove();
}

function startEdit(li) {
  if (li.querySelector(".edit-form")) return;
  const body = li.querySelector(".body");
  const old = [...body.childNodes].filter((n) => !(n.classList && n.classList.contains("edited"))).map((n) => n.textContent).join("");
  const form = document.createElement("form");
  form.className = "edit-form";
  const area = document.createElement("textarea");
  area.value = old;
  area.rows = 2;
  area.setAttribute("aria-label", "Edit the message");
  const save = button("Save", "save", "Save the edit");
  save.type = "submit";
  const cancel = button("Cancel", "cancel", "Cancel the edit");
  form.append(area, save, cancel);
  body.hidden = true;
  body.after(form);
  area.focus();
  const close = () => { form.remove(); body.hidden = false; };
  cancel.addEventListener("click", close);
  area.addEventListener("keydown", (e) => {
    if (e.key === "Escape") close();
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = area.value.trim();
    close();
    if (text && text !== old && [...text].length <= maxText) command({ type: "edit", id: li.dataset.id, text });
  });
}

function renderReactions(li) {
  const bar = li.querySelector(".reactions");
  if (!bar) return;
  bar.replaceChildren();
  for (const [emoji, r] of li.reactions) {
    const b = button(`${emoji} ${r.count}`, "reaction", `${emoji}: ${r.count}${r.me ? ", including you" : ""}`);
    b.dataset.emoji = emoji;
    b.setAttribute("aria-pressed", String(r.me));
    b.addEventListener("click", () => command({ type: "react", id: li.dataset.id, emoji, on: !r.me }));
    bar.append(b);
  }
}

function togglePicker(li) {
  const open = li.querySelector(".picker");
  if (open) { open.remove(); return; }
  const picker = document.createElement("div");
  picker.className = "picker";
  for (const emoji of QUICK_EMOJI) {
    const b = button(emoji, "pick", `React with ${emoji}`);
    b.dataset.emoji = emoji;
    b.addEventListener("click", () => {
      picker.remove();
      command({ type: "react", id: li.dataset.id, emoji, on: !li.reactions.get(emoji)?.me });
    });
    picker.append(b);
  }
  li.querySelector(".actions").after(picker);
}

function startTyping(ev) {
  const key = personKey(ev.from, ev.uid);
  typers.set(key, { name: ev.from, until: Date.now() + TYPING_SHOWN_MS });
  renderTyping();
  setTimeout(renderTyping, TYPING_SHOWN_MS + 50);
}

function stopTyping(key) {
  if (typers.delete(key)) renderTyping();
}

function renderTyping() {
  const now = Date.now();
  for (const [k, t] of typers) if (t.until <= now) typers.delete(k);
  const names = [...typers.values()].map((t) => t.name);
  ui.typing.textContent = names.length === 0 ? ""
    : names.length === 1 ? `${names[0]} is typing…`
    : names.length === 2 ? `${names[0]} and ${names[1]} are typing…`
    : `${names[0]} and ${names.length - 1} others are typing…`;
}

// ---------- read markers, unread counts, notifications ----------

function idLess(a, b) {
  const [am, as] = a.split("-").map(Number), [bm, bs] = b.split("-").map(Number);
  return am < bm || (am === bm && as < bs);
}

// newMessagesLine marks where the user stopped reading: before the first
// replayed message of someone else after the marker.
function newMessagesLine(read) {
  for (const li of ui.messages.querySelectorAll(".msg.replay[data-id]")) {
    if (idLess(read, li.dataset.id) && !isMine(li)) {
      const div = document.createElement("li");
      div.className = "divider new";
      div.setAttribute("role", "separator");
      div.textContent = "new messages";
      li.before(div);
      return;
    }
  }
}

// markRead moves the read marker to the newest entry shown, when the user
// can see it: signed in, the tab visible, the conversation at its bottom.
// At most one a second: the first at once (a reader who opens a room and
// leaves has read it), later ones at the end of the second.
function markRead() {
  if (!myUid || !conn?.live || document.hidden || !atBottom()) return;
  const wait = 1000 - (Date.now() - markedAt);
  if (wait <= 0) {
    sendMark();
  } else if (!markTimer) {
    const c = conn;
    markTimer = setTimeout(() => { markTimer = 0; if (conn === c) markRead(); }, wait);
  }
}

function sendMark() {
  const last = conn.lastId;
  if (!last || (marked && !idLess(marked, last))) return;
  marked = last;
  markedAt = Date.now();
  conn.command({ type: "read", id: last });
  setTimeout(loadRooms, 300);
}

// arrived counts, notifies and marks a live message of someone else.
function arrived(ev) {
  if (ev.uid ? ev.uid === myUid : ev.from === me) return;
  if (document.hidden) {
    hiddenUnread++;
    updateTitle();
    const text = ev.type === "file" ? `sent ${ev.name || "a file"}` : ev.text || "";
    const direct = conn?.room.startsWith("@");
    if ((direct || mentionsMe(ev.text)) && "Notification" in window && Notification.permission === "granted") {
      const where = direct ? "" : ` in #${conn.room}`;
      const n = new Notification(`${ev.from}${where}`, { body: text.slice(0, 140), tag: ev.id });
      n.onclick = () => { window.focus(); n.close(); };
    }
  }
}

function updateTitle() {
  const n = hiddenUnread + otherUnread;
  const room = ui.roomTitle.textContent;
  document.title = `${n ? `(${n > 99 ? "99+" : n}) ` : ""}${room ? `${room} · ` : ""}streamchat`;
}

// renderRooms lists the signed-in user's rooms with their unread badges.
function renderRooms(list) {
  ui.rooms.hidden = !myUid || list.length === 0;
  ui.roomList.replaceChildren();
  otherUnread = 0;
  for (const r of list) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = roomHash(r.room);
    a.textContent = r.room.startsWith("@") ? r.room : `#${r.room}`;
    a.dataset.room = r.room;
    const current = conn && conn.room === r.room;
    if (current) a.setAttribute("aria-current", "page");
    li.append(a);
    if (r.unread > 0 && !(current && !document.hidden)) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = r.unread_label;
      badge.setAttribute("aria-label", `${r.unread_label} unread`);
      li.append(" ", badge);
      if (!current) otherUnread += r.unread;
    }
    ui.roomList.append(li);
  }
  updateTitle();
}

async function loadRooms() {
  const body = await userAPI("/api/me/rooms");
  if (body) renderRooms(body.rooms || []);
}

function pollRooms() {
  setTimeout(() => { loadRooms().finally(pollRooms); }, document.hidden ? 6 * ROOMS_EVERY_MS : ROOMS_EVERY_MS);
}

// ---------- actions ----------

function sendText(text) {
  const nonce = randomId();
  const li = messageItem(me, myUid, text, null, false);
  li.classList.add("pending");
  li.dataset.nonce = nonce;
  ui.messages.append(li); // your own message always scrolls into view
  ui.messages.scrollTop = ui.messages.scrollHeight;
  pending.set(nonce, { li, text, acked: false, sentOn: conn.live ? conn.ws : null, retries: 0 });
  conn.send(text, nonce);
}

// sendFile uploads a file: a pending item with progress, then the stored
// entry replaces it when it comes back through the stream.
async function sendFile(file) {
  if (!conn) return;
  const nonce = randomId();
  const bytes = new Uint8Array(await file.arrayBuffer());
  const meta = { type: "file", name: file.name || "pasted", mime: file.type || "", size: bytes.length, nonce };
  const li = messageItem(me, myUid, "", null, false, (body) => {
    const s = document.createElement("span");
    s.className = "progress";
    s.textContent = `${meta.name}: uploading…`;
    body.append(s);
  });
  li.classList.add("pending");
  li.dataset.nonce = nonce;
  ui.messages.append(li);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  const p = { li, file: { meta, bytes, name: meta.name }, acked: false, sentOn: conn.live ? conn.ws : null, retries: 0 };
  pending.set(nonce, p);
  conn.sendFile(meta, bytes, nonce);
  // Progress: how much of the frame the browser has yet to send.
  const tick = setInterval(() => {
    const s = li.querySelector(".progress");
    if (!s || !pending.has(nonce)) { clearInterval(tick); return; }
    const left = conn.ws ? conn.ws.bufferedAmount : bytes.length;
    const pct = Math.max(0, Math.min(100, Math.round(100 * (1 - left / bytes.length))));
    s.textContent = `${meta.name}: uploading ${pct}%`;
  }, 100);
}

function rememberRoom(room) {
  let rooms = JSON.parse(localStorage.getItem("recentRooms") || "[]").filter((r) => r !== room);
  rooms.unshift(room);
  rooms = rooms.slice(0, RECENT_MAX);
  localStorage.setItem("recentRooms", JSON.stringify(rooms));
  renderRecent(room);
}

function renderRecent(current) {
  const rooms = JSON.parse(localStorage.getItem("recentRooms") || "[]");
  ui.recent.replaceChildren();
  for (const r of rooms) {
    if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(r)) continue;
    const a = document.createElement("a");
    a.href = `#/r/${r}`;
    a.textContent = `#${r}`;
    if (r === current) a.setAttribute("aria-current", "page");
    ui.recent.append(a);
  }
}

function join(room) {
  if (!signedIn()) {
    me = ui.name.value.trim();
    if (!me) { ui.name.focus(); return; }
    localStorage.setItem("username", me);
    document.cookie = `username=${encodeURIComponent(me)}; path=/; max-age=31536000; SameSite=Strict`;
  }
  if (conn) conn.stop();
  ui.messages.replaceChildren();
  pending.clear();
  shown.clear();
  online.clear();
  historyMore = true;
  historyLoading = false;
  typers.clear();
  renderTyping();
  hiddenUnread = 0;
  marked = "";
  clearTimeout(markTimer);
  markTimer = 0;
  markedAt = 0;
  document.body.classList.add("joined");
  renderOnline();
  unseen = 0;
  ui.jump.hidden = true;
  ui.roomTitle.textContent = room.startsWith("@") ? room : `#${room}`;
  updateTitle();
  if (!room.startsWith("@")) rememberRoom(room);
  conn = new RoomConnection({ room, name: me, token, clientKey: clientKey(), onEvent, onStatus: setStatus, refreshToken: tokenRefresher() });
  conn.start();
  ui.text.focus();
}

// randomId is 32 random hex digits. (crypto.randomUUID exists only on
// https and localhost pages; getRandomValues everywhere.)
function randomId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// clientKey is this browser's key, kept in localStorage: the server stores
// each nonce once per key, so resends are never doubled, even after a reload.
function clientKey() {
  let key = localStorage.getItem("clientKey");
  if (!/^[A-Za-z0-9_-]{16,64}$/.test(key || "")) {
    key = randomId();
    localStorage.setItem("clientKey", key);
  }
  return key;
}

// The room is in the URL: #/r/lobby, or #/r/@USERID for a direct
// conversation (the id percent-encoded).
function roomFromHash() {
  const raw = location.hash.match(/^#\/r\/([^@].*)$/);
  if (raw && raw[1] !== raw[1].toLowerCase()) {
    // Room names are lower-case: #/r/Lobby means lobby.
    history.replaceState(null, "", `#/r/${raw[1].toLowerCase()}`);
  } else if (raw && !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(raw[1])) {
    setStatus("offline", "room names are lower-case letters, digits, - and _");
  }
  const m = location.hash.match(/^#\/r\/([a-z0-9][a-z0-9_-]{0,63}|@[^\s]{1,400})$/);
  if (!m) return "";
  if (!m[1].startsWith("@")) return m[1];
  let uid = "";
  try { uid = decodeURIComponent(m[1].slice(1)); } catch { return ""; }
  return /^[!-~]{1,128}$/.test(uid) ? `@${uid}` : "";
}

function roomHash(room) {
  return room.startsWith("@") ? `#/r/@${encodeURIComponent(room.slice(1))}` : `#/r/${room}`;
}

// takeToken moves a ?token= from the address into this tab's storage, so it
// is neither bookmarked nor sent to other sites as a referrer.
function takeToken() {
  const params = new URLSearchParams(location.search);
  const t = params.get("token");
  if (t) {
    sessionStorage.setItem("chatToken", t);
    params.delete("token");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? `?${q}` : "") + location.hash);
  }
  return sessionStorage.getItem("chatToken") || "";
}

// signedIn: a token, or a chat_token cookie the site set (this script
// cannot read an HttpOnly one, so a hint cookie counts as well).
function signedIn() { return Boolean(token) || /(^|;\s*)chat_signed_in=/.test(document.cookie); }

// tokenRefresher is the embedding page's window.streamchatToken, an async
// function that returns a fresh token when the old one expires.
function tokenRefresher() {
  return typeof window.streamchatToken === "function" ? window.streamchatToken : null;
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  const room = ui.room.value.trim() || "lobby";
  if (roomFromHash() === room && conn && conn.room === room && conn.name === ui.name.value.trim()) return;
  if (roomFromHash() !== room) location.hash = roomHash(room); // hashchange joins
  else join(room);
});

window.addEventListener("hashchange", () => {
  const room = roomFromHash();
  if (!room) return;
  if (!room.startsWith("@")) ui.room.value = room;
  if (ui.name.value.trim() || signedIn()) join(room);
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text || [...text].length > maxText || !conn) return;
  ui.text.value = "";
  autosize();
  updateCounter();
  typingSentAt = 0; // the next message's typing is news again
  sendText(text);
});

ui.text.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("send").requestSubmit();
  }
});

function autosize() {
  ui.text.style.height = "auto";
  ui.text.style.height = `${Math.min(ui.text.scrollHeight, 160)}px`;
}
ui.text.addEventListener("input", () => {
  autosize();
  updateCounter();
  const now = Date.now();
  if (ui.text.value.trim() && conn?.live && now - typingSentAt >= TYPING_EVERY_MS) {
    typingSentAt = now;
    conn.command({ type: "typing" });
  }
});

ui.messages.addEventListener("scroll", () => {
  if (atBottom()) { unseen = 0; ui.jump.hidden = true; markRead(); }
  if (ui.messages.scrollTop < 40) loadOlder();
});

// On a phone the join form folds away once in a room; the room's name in
// the bar brings it back.
ui.roomTitle.addEventListener("click", () => document.body.classList.toggle("joined"));

// Files: the attach button, a drop on the conversation, a pasted image.
$("attach").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (e) => {
  for (const f of e.target.files) sendFile(f);
  e.target.value = "";
});
const chat = document.querySelector(".chat");
chat.addEventListener("dragover", (e) => { e.preventDefault(); chat.classList.add("dropping"); });
chat.addEventListener("dragleave", () => chat.classList.remove("dropping"));
chat.addEventListener("drop", (e) => {
  e.preventDefault();
  chat.classList.remove("dropping");
  for (const f of e.dataTransfer?.files || []) sendFile(f);
});
ui.text.addEventListener("paste", (e) => {
  for (const item of e.clipboardData?.items || []) {
    if (item.kind === "file") { e.preventDefault(); sendFile(item.getAsFile()); }
  }
});

// Leaving the page for another one in the same tab keeps it in the
// back/forward cache, socket and all, so it stayed "online": close on
// pagehide, resume on pageshow.
window.addEventListener("pagehide", () => { if (conn) conn.pause(); });
window.addEventListener("pageshow", (e) => { if (e.persisted && conn) conn.resume(); });
ui.jump.addEventListener("click", () => {
  ui.messages.scrollTop = ui.messages.scrollHeight;
  unseen = 0;
  ui.jump.hidden = true;
  ui.text.focus();
});

// ---------- start ----------

ui.name.value = localStorage.getItem("username") || "";
if (signedIn()) {
  // The token names us: no name to type.
  ui.nameField.hidden = true;
  ui.name.required = false;
  setInterval(loadConversations, 10000);
  pollRooms();
}
if ("Notification" in window && Notification.permission === "default") {
  // Asking needs a click: the browser refuses a request made on load.
  ui.notify.hidden = false;
  ui.notify.addEventListener("click", () => {
    Notification.requestPermission().finally(() => { ui.notify.hidden = Notification.permission === "default"; });
  });
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    hiddenUnread = 0;
    updateTitle();
    markRead();
    loadRooms();
  }
});
const initial = roomFromHash();
if (initial && !initial.startsWith("@")) ui.room.value = initial;
renderRecent(initial);
if (initial && (ui.name.value || signedIn())) join(initial);
else (ui.name.value || signedIn() ? ui.room : ui.name).focus();
