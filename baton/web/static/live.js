// Live pages without a reload: every data-refresh seconds the page is fetched again and
// its #live part swapped in. Without JavaScript the page is the same, refreshed by hand.
(function () {
  var seconds = Number(document.body.getAttribute("data-refresh") || 0);
  if (!seconds || !window.fetch || !window.DOMParser) return;
  setInterval(function () {
    fetch(location.href, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var old = document.getElementById("live");
        if (fresh && old) old.replaceWith(fresh);
      })
      .catch(function () { /* the next tick tries again */ });
  }, seconds * 1000);
})();
