// The viewer sign-in (Mirador page): the token typed into the form goes once to POST /session,
// which answers with an HttpOnly cookie that page script cannot read. GET /session says who is
// signed in and gives the CSRF value that writes send in the X-CSRF-Token header.

/** {user, editor, csrf} of the signed-in user, or {user: null}. */
export async function fetchSession(base) {
  try {
    const response = await fetch(`${base}/session`, {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    });
    if (!response.ok) return { user: null };
    return await response.json();
  } catch (e) {
    return { user: null };
  }
}

export function setupSignInForm(base, session) {
  const form = document.getElementById('sign-in');
  if (!form) return;
  const input = form.querySelector('input[name=token]');
  const state = document.getElementById('session-state');
  const signOut = document.getElementById('sign-out');
  const signedIn = Boolean(session && session.user);
  state.textContent = signedIn
    ? `Annotating as ${session.user}`
    : 'Annotations are read-only: sign in with a token to edit';
  input.hidden = signedIn;
  form.querySelector('button[type=submit]').hidden = signedIn;
  signOut.hidden = !signedIn;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    const response = await fetch(`${base}/session`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token }),
    });
    input.value = '';
    if (!response.ok) {
      state.textContent = `Sign-in failed: ${(await response.text()).trim()}`;
      return;
    }
    window.location.reload();
  });
  signOut.addEventListener('click', async () => {
    await fetch(`${base}/session`, { method: 'DELETE', credentials: 'same-origin' });
    window.location.reload();
  });
}
