// The Auth 2.0 client algorithm: info.json -> probe -> access service (a window the user
// acts in) -> token service (hidden iframe, postMessage) -> probe with the token -> image.
const params = new URLSearchParams(window.location.search);
const INFO = params.get("info");
const origin = window.location.origin;
const out = (id, value) => { document.getElementById(id).textContent = String(value); };
let probe, access, tokenService;

function find(node, type) {
  for (const s of node.service || []) {
    if (s.type === type) return s;
    const inner = find(s, type);
    if (inner) return inner;
  }
  return null;
}

async function start() {
  const info = await (await fetch(INFO)).json();
  probe = find(info, "AuthProbeService2");
  access = probe.service.find((s) => s.profile === "active");
  tokenService = access.service.find((s) => s.type === "AuthAccessTokenService2");
  out("heading", access.heading.en[0]);
  out("before", (await (await fetch(probe.id)).json()).status);
}

function requestToken() {
  const messageId = "m" + Math.random().toString(36).slice(2);
  window.addEventListener("message", async (event) => {
    if (event.origin !== new URL(tokenService.id).origin) return;
    if (!event.data || event.data.messageId !== messageId) return;
    out("token", event.data.type);
    if (event.data.type !== "AuthAccessToken2") return;
    const headers = { Authorization: "Bearer " + event.data.accessToken };
    const result = await (await fetch(probe.id, { headers })).json();
    out("after", result.status);
    if (result.status === 200) {
      const img = document.getElementById("img");
      img.addEventListener("load", () => out("img-size", img.naturalWidth + "x" + img.naturalHeight));
      img.src = INFO.replace(/\/info\.json$/, "/full/120,/0/default.jpg");
    }
  });
  const frame = document.createElement("iframe");
  frame.hidden = true;
  frame.src = tokenService.id + "?messageId=" + encodeURIComponent(messageId) +
    "&origin=" + encodeURIComponent(origin);
  document.body.appendChild(frame);
}

document.getElementById("go").addEventListener("click", () => {
  const win = window.open(access.id + "?origin=" + encodeURIComponent(origin));
  const timer = setInterval(() => {
    if (win.closed) { clearInterval(timer); requestToken(); }
  }, 100);
});
start();
