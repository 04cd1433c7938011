/* global window */
/*
 * Page functions the harness's own tests call (test/browser/harness.test.ts):
 * each one exercises one thing the harness promises.
 */
(function () {
  "use strict";

  window.probe = {
    /** Where the page thinks it is. */
    where: function () {
      return { origin: window.location.origin, title: window.document.title };
    },
    /** An async result, cloned out of the page. */
    echo: function (value) {
      return Promise.resolve({ echoed: value });
    },
    /** A page function that throws. */
    fail: function (text) {
      throw new Error(text);
    },
    /** A page function that never settles. */
    never: function () {
      return new Promise(function () {});
    },
    /** A console error, and an error nobody catches. */
    misbehave: function (text) {
      console.error("console: " + text);
      setTimeout(function () {
        throw new Error("thrown: " + text);
      }, 0);
      return true;
    },
    /** "reached" if `url` answered at all (no-cors: any answer counts), else the error. */
    reach: function (url) {
      return fetch(url, { mode: "no-cors", cache: "no-store" }).then(
        function () {
          return "reached";
        },
        function (err) {
          return "failed: " + String(err);
        },
      );
    },
  };
})();
