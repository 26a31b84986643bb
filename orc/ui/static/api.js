// The manager's HTTP API as the page uses it: one `request` function that sends the token,
// asks for it when the manager says 401, and turns orc's JSON errors into exceptions that carry
// the server's own message.

// The page is served at <orc>/ui/, the API at <orc>/: resolving against the page (not "/")
// keeps it working behind a proxy that mounts orc under a path.
export const API_BASE = new URL("..", document.baseURI);

const TOKEN_KEY = "orc-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// One prompt at a time: at start-up several calls meet the 401 together, and all of them
// wait for the same answer.
let prompting = null;

function askToken(reason) {
  if (prompting) return prompting;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason;
  // Escape would close the dialog with nothing to retry with: keep it open.
  dialog.oncancel = (event) => event.preventDefault();
  prompting = new Promise((resolve) => {
    form.addEventListener(
      "submit",
      () => {
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        input.value = "";
        prompting = null;
        resolve();
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return prompting;
}

// orc answers every error with JSON {"message": ...}; anything else (a proxy's page, say) is
// shown by its status line.
async function messageOf(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") return body.message;
  } catch {
    // not JSON: fall through
  }
  return `${response.status} ${response.statusText}`.trim();
}

// `path` is relative to the API's root ("tasks", "tasks/ID/history"). Returns the decoded JSON
// body (null for 204); with `raw`, the Response itself once it is not a 401 (the event stream
// reads its body as it arrives).
export async function request(method, path, { body, signal, raw = false } = {}) {
  for (;;) {
    const headers = new Headers();
    const token = savedToken();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const init = { method, headers, signal, cache: "no-store" };
    if (body !== undefined) {
      headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(body);
    }
    const response = await fetch(new URL(path, API_BASE), init);
    if (response.status === 401) {
      // No token yet, or a wrong one: ask, then send the same request again.
      await askToken(await messageOf(response));
      continue;
    }
    if (raw) return response;
    if (!response.ok) throw new ApiError(response.status, await messageOf(response));
    if (response.status === 204) return null;
    return response.json();
  }
}
