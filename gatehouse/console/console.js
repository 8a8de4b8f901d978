// Keeps the Activity feed live: every 5 s, while the tab is visible, it fetches the feed's rows
// (rendered and escaped by the server) and swaps them in. Without script the page still works.
(function () {
  'use strict';
  var body = document.getElementById('feed');
  if (!body) { return; }
  var status = document.getElementById('feed-status');
  function say(text) { if (status) { status.textContent = text; } }
  function poll() {
    if (document.visibilityState !== 'visible') { return; }
    fetch(body.getAttribute('data-feed'), { credentials: 'same-origin', redirect: 'error' })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (rows) {
        body.innerHTML = rows;
        say('Live · updated ' + new Date().toLocaleTimeString());
      })
      .catch(function () { say('Live updates paused; reload the page to sign in again'); });
  }
  window.setInterval(poll, 5000);
}());
