// The login form: carry ?next= through, and say when the last attempt was refused.
'use strict';
const query = new URLSearchParams(location.search);
if (query.get('next')) document.getElementById('next').value = query.get('next');
if (query.get('error')) {
  document.getElementById('error').textContent = 'Refused: that is not an admin credential.';
}
document.getElementById('token').focus();
