/* global window */
/*
 * The chat client a test page runs: what a browser tab of the chat app does
 * with the factory's WebSocket, written against the client protocol
 * (src/contract/client.ts) with nothing but the browser's own WebSocket.
 * Every function returns plain data (it is cloned out of the page).
 *
 * A tab "settles" at its first welcome (admitted) or at its close (refused,
 * or ended before a welcome), whichever comes first.
 */
(function () {
  "use strict";

  // Kept in step with src/contract/client.ts (SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX).
  var SUBPROTOCOL = "reclaim.v1";
  var TOKEN_SUBPROTOCOL_PREFIX = "base64url.bearer.reclaim.dev.";

  var tabs = [];
  // Tabs in the order they closed, and who waits for how many.
  var closedOrder = [];
  var closeWaiters = [];

  function base64url(text) {
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function snapshot(tab) {
    return {
      index: tab.index,
      readyState: tab.ws.readyState,
      protocol: tab.ws.protocol,
      messages: tab.messages.slice(),
      errorEvents: tab.errorEvents,
      closed: tab.closed,
    };
  }

  /**
   * Opens one tab. `how` is "subprotocol" (the token as a WebSocket
   * subprotocol, beside reclaim.v1) or "query" (`?token=`). Resolves with the
   * tab's snapshot once it settles.
   */
  function open(url, token, how) {
    var ws;
    if (how === "subprotocol") {
      ws = new WebSocket(url, [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + base64url(token)]);
    } else if (how === "query") {
      ws = new WebSocket(url + "?token=" + encodeURIComponent(token));
    } else {
      throw new Error("unknown token transport: " + how);
    }
    var tab = { index: tabs.length, ws: ws, messages: [], errorEvents: 0, closed: null };
    tabs.push(tab);
    return new Promise(function (resolve) {
      var settled = false;
      function settle() {
        if (settled) return;
        settled = true;
        resolve(snapshot(tab));
      }
      ws.onmessage = function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch {
          message = { unparsable: String(event.data) };
        }
        tab.messages.push(message);
        if (message.type === "welcome") settle();
      };
      ws.onerror = function () {
        tab.errorEvents += 1;
      };
      ws.onclose = function (event) {
        tab.closed = { code: event.code, reason: event.reason, wasClean: event.wasClean };
        closedOrder.push(tab);
        closeWaiters = closeWaiters.filter(function (w) {
          if (closedOrder.length < w.count) return true;
          w.resolve(closedOrder.map(snapshot));
          return false;
        });
        settle();
      };
    });
  }

  /**
   * Opens `count` tabs one after another; resolves with their snapshots. Stops
   * at the first tab that is not welcomed (as an app would), so a refusal
   * shows at once: Chromium delays each retry to an endpoint that keeps
   * failing handshakes.
   */
  async function openMany(url, token, how, count) {
    var results = [];
    for (var i = 0; i < count; i++) {
      var tab = await open(url, token, how);
      results.push(tab);
      if (tab.closed !== null) break;
    }
    return results;
  }

  /** Closes tab `index` (code 1000) and resolves with its snapshot once its close handshake is over. */
  function closeTab(index) {
    var tab = tabs[index];
    if (tab === undefined) throw new Error("no tab " + index);
    if (tab.closed !== null) return Promise.resolve(snapshot(tab));
    return new Promise(function (resolve) {
      tab.ws.addEventListener("close", function () {
        resolve(snapshot(tab));
      });
      tab.ws.close(1000, "tab closed");
    });
  }

  /**
   * What a chat app does with a refusal: waits the `retryAfterMs` it was
   * told (on the page's own timer), then opens a tab again.
   */
  function retryAfter(refused, url, token, how) {
    if (refused === null || refused.type !== "refused") throw new Error("not a refusal: " + JSON.stringify(refused));
    return new Promise(function (resolve) {
      setTimeout(function () {
        resolve(open(url, token, how).then(function (tab) {
          return { waitedMs: refused.retryAfterMs, tab: tab };
        }));
      }, refused.retryAfterMs);
    });
  }

  /**
   * Resolves, once at least `count` tabs have closed (counting those closed
   * before the call), with the closed tabs' snapshots in the order they closed.
   */
  function closes(count) {
    if (closedOrder.length >= count) return Promise.resolve(closedOrder.map(snapshot));
    return new Promise(function (resolve) {
      closeWaiters.push({ count: count, resolve: resolve });
    });
  }

  /** Every tab's snapshot. */
  function all() {
    return tabs.map(snapshot);
  }

  window.chat = { open: open, openMany: openMany, closeTab: closeTab, retryAfter: retryAfter, closes: closes, all: all };
})();
