// One room connection: reconnects with exponential backoff and jitter, and
// resumes with `since` = the id of the last stream event delivered, so the
// page sees every entry once across drops, restarts and deploys.

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 30000;

export class RoomConnection {
  // onEvent(ev) gets every server frame; onStatus(state, detail) gets
  // "connecting" | "live" | "reconnecting" (detail: seconds left) | "offline" (detail: why).
  // clientKey names this browser across reconnects and reloads: the server
  // stores each of its nonces once, so a message resent after a drop is
  // not doubled.
  // token signs in (when set; a chat_token cookie does too); refreshToken,
  // when given, is asked for a fresh one when the server ends the
  // connection because the token expired.
  constructor({ room, name, token, clientKey, onEvent, onStatus, refreshToken }) {
    this.room = room;
    this.name = name;
    this.token = token;
    this.refreshToken = refreshToken;
    this.clientKey = clientKey;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastId = "";
    this.attempt = 0;
    this.ws = null;
    this.live = false;
    this.stopped = false;
    this.outbox = []; // frames waiting for a live connection
    this.timer = 0;
    this.countdown = 0;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this.live = false;
  }

  // send queues the message until the connection is live.
  send(text, nonce) {
    this.outbox.push({ frame: { type: "message", text, nonce } });
    this.flush();
  }

  // sendFile queues a file: its file frame and, right after it, its bytes
  // as one binary frame.
  sendFile(meta, bytes, nonce) {
    this.outbox.push({ frame: { ...meta, nonce }, bytes });
    this.flush();
  }

  // command sends any other command now, or not at all when not live.
  command(frame) {
    if (this.live && this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  flush() {
    while (this.live && this.outbox.length && this.ws && this.ws.readyState === WebSocket.OPEN) {
      const { frame, bytes } = this.outbox.shift();
      this.ws.send(JSON.stringify(frame));
      if (bytes) this.ws.send(bytes);
    }
  }

  // pause closes the socket without giving up the room; resume reconnects
  // with since = the last event, as after any drop.
  pause() {
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.paused = true;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      this.live = false;
      ws.close(1000);
    }
  }

  resume() {
    if (!this.paused || this.stopped) return;
    this.paused = false;
    this.open();
  }

  open() {
    clearInterval(this.countdown);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ room: this.room });
    if (this.name) q.set("name", this.name);
    if (this.token) q.set("token", this.token);
    if (this.clientKey) q.set("client", this.clientKey);
    if (this.lastId) q.set("since", this.lastId);
    this.onStatus(this.attempt ? "reconnecting" : "connecting", 0);
    const ws = new WebSocket(`${proto}//${location.host}/ws?${q}`);
    this.ws = ws;
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      if (isEntry(ev)) this.lastId = ev.id;
      if (ev.type === "ready") {
        if (!this.lastId) this.lastId = ev.cursor;
        this.live = true;
        this.attempt = 0;
        this.onStatus("live", 0);
      }
      this.onEvent(ev);
      if (ev.type === "ready") this.flush();
    };
    ws.binaryType = "arraybuffer";
    ws.onclose = (e) => {
      if (this.ws !== ws || this.stopped || this.paused) return;
      this.ws = null;
      this.live = false;
      if (e.code === 1008 && e.reason === "token_expired" && this.refreshToken) {
        // A fresh token, then a resume from the last event: nothing lost.
        Promise.resolve(this.refreshToken()).then((t) => {
          if (this.stopped) return;
          this.token = t;
          sessionStorage.setItem("chatToken", t);
          this.retry(true);
        }, () => this.onStatus("offline", "sign-in expired"));
        return;
      }
      if (e.code === 1008) { // refused: reconnecting would be refused again
        this.onStatus("offline", e.reason || "refused");
        return;
      }
      this.retry(e.code === 1001);
    };
  }

  // retry waits with exponential backoff and full jitter. A server going
  // away (1001) is retried almost at once, spread over half a second.
  retry(goingAway) {
    const cap = goingAway && this.attempt === 0 ? BACKOFF_BASE_MS
      : Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = cap / 2 + Math.random() * cap / 2;
    this.attempt++;
    const due = Date.now() + delay;
    const tick = () => this.onStatus("reconnecting", Math.max(0, Math.ceil((due - Date.now()) / 1000)));
    tick();
    this.countdown = setInterval(tick, 1000);
    this.timer = setTimeout(() => this.open(), delay);
  }
}

// isEntry reports whether a frame is a stream entry. An ack carries the id
// of the stored message too, but the entry itself has not been delivered yet.
export function isEntry(ev) {
  return Boolean(ev.id) && ev.type !== "ack";
}
