// The login form: the credential goes to POST /admin/ui/login in Authorization: Bearer,
// the way the admin API takes it, never in a URL; the answer sets the session cookie.
'use strict';
const query = new URLSearchParams(location.search);
const form = document.getElementById('login');
const error = document.getElementById('error');

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  const token = document.getElementById('token').value.trim();
  const next = query.get('next') || '/admin/ui/simulator';
  const response = await fetch('/admin/ui/login?next=' + encodeURIComponent(next), {
    method: 'POST', credentials: 'same-origin', headers: { Authorization: 'Bearer ' + token },
  });
  if (response.ok) {
    location.assign((await response.json()).next);
  } else {
    error.textContent = response.status === 403
      ? 'The admin API is disabled: set [admin] token_env/file or role.'
      : 'Refused: that is not an admin credential.';
  }
});
document.getElementById('token').focus();
