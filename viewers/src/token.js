// The annotation token form shared by the viewer pages: the token is entered once and kept in
// localStorage under "iiifsrv.token"; the page reloads so the viewer picks it up.
const KEY = 'iiifsrv.token';

export function storedToken() {
  try {
    return window.localStorage.getItem(KEY) || null;
  } catch (e) {
    return null;
  }
}

export function setupTokenForm(token) {
  const form = document.getElementById('token-form');
  if (!form) return;
  const input = form.querySelector('input[name=token]');
  const state = document.getElementById('token-state');
  const forget = document.getElementById('token-forget');
  state.textContent = token ? 'Annotating: token set' : 'Annotations are read-only: enter a token to edit';
  forget.hidden = !token;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) window.localStorage.setItem(KEY, value);
    window.location.reload();
  });
  forget.addEventListener('click', () => {
    window.localStorage.removeItem(KEY);
    window.location.reload();
  });
}
