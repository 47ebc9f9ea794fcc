// Touchpoint snippet: inline it in <head>. Defines window.touchpoint as a queue at once; the first
// touchpoint.load(writeKey, options) fetches the SDK (options.sdkUrl, or {apiHost}/sdk/touchpoint.js,
// or touchpoint.dev.js when options.devPlan or options.debug is set) and replays every queued call in order.
(function (w) {
  var tp = w.touchpoint;
  if (tp && tp.q === undefined) return; // the SDK is already here
  tp = w.touchpoint = tp || {};
  var q = (tp.q = tp.q || []);
  var ready = [];
  var methods = "load page track identify group alias reset debug consent setConsent flush".split(" ");
  methods.forEach(function (m) {
    tp[m] = function () {
      q.push([m].concat([].slice.call(arguments)));
      if (m === "load" && !tp.loading) start(arguments[1] || {});
      return tp;
    };
  });
  tp.ready = function (cb) {
    ready.push(cb);
    return tp;
  };
  tp.user = function () {
    return { anonymousId: function () { return null; }, id: function () { return null; }, traits: function () { return {}; } };
  };
  function start(o) {
    tp.loading = 1;
    var url = o.sdkUrl || (o.apiHost || "").replace(/\/$/, "") + "/sdk/touchpoint" + (o.devPlan || o.debug ? ".dev" : "") + ".js";
    import(url)
      .then(function (m) {
        return m.default().then(function () {
          methods.forEach(function (k) {
            tp[k] = function () {
              m[k].apply(null, arguments);
              return tp;
            };
          });
          tp.ready = function (cb) {
            m.ready(cb);
            return tp;
          };
          tp.user = function () {
            return { anonymousId: m.anonymousId, id: m.userId, traits: m.traits };
          };
          while (q.length) {
            var c = q.shift();
            try {
              tp[c[0]].apply(null, c.slice(1));
            } catch (e) {
              console.warn("touchpoint:", e);
            }
          }
          delete tp.q;
          ready.forEach(tp.ready);
        });
      })
      .catch(function (e) {
        tp.loading = 0;
        console.warn("touchpoint: SDK failed to load", e);
      });
  }
})(window);
