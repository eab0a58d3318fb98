/* gpaisec device key of this browser: make it, show its public key, prove it at sign-in.
 *
 * Served from the package (CSP: script-src 'self'). The key is a WebCrypto ECDSA P-256 key pair made
 * with extractable=false: the private key can sign but never be read, not even by this script. The
 * CryptoKey objects themselves are kept in IndexedDB (database "gpaisec", store "device-key").
 *
 * The proof (see gpaisec.access.device_keys): the API hands out a challenge
 * (POST /api/v1/session/device-challenge); this browser signs
 *   "gpaisec-device-proof-v1\0" || challenge (32 bytes) || fingerprint (ASCII) || username (UTF-8)
 * with ECDSA P-256/SHA-256 (WebCrypto gives r||s, 64 bytes, as the server expects) and puts the
 * fingerprint, the challenge id and the signature (base64) in the sign-in form's hidden fields.
 * The fingerprint is "sha256:" and the hex SHA-256 of the public key's DER SubjectPublicKeyInfo.
 */
(function () {
  "use strict";

  var DB = "gpaisec";
  var STORE = "device-key";
  var SLOT = "current";
  var DOMAIN = "gpaisec-device-proof-v1\u0000";

  function say(where, text) {
    var box = document.getElementById(where);
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  function show(id, visible) {
    var el = document.getElementById(id);
    if (el) el.hidden = !visible;
  }

  function supported() {
    return !!(window.crypto && window.crypto.subtle && window.indexedDB);
  }

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB, 1);
      request.onupgradeneeded = function () {
        request.result.createObjectStore(STORE);
      };
      request.onsuccess = function () {
        resolve(request.result);
      };
      request.onerror = function () {
        reject(request.error);
      };
    });
  }

  async function withStore(mode, work) {
    var db = await openDb();
    try {
      return await new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode);
        var request = work(tx.objectStore(STORE));
        tx.oncomplete = function () {
          resolve(request.result);
        };
        tx.onerror = tx.onabort = function () {
          reject(tx.error);
        };
      });
    } finally {
      db.close();
    }
  }

  function loadKey() {
    return withStore("readonly", function (store) {
      return store.get(SLOT);
    });
  }

  async function makeKey() {
    var pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
      "sign",
      "verify",
    ]);
    var record = { privateKey: pair.privateKey, publicKey: pair.publicKey, created: new Date().toISOString() };
    await withStore("readwrite", function (store) {
      return store.put(record, SLOT);
    });
    return record;
  }

  function bytesToB64(bytes) {
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw);
  }

  function b64ToBytes(text) {
    var raw = atob(text);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function ascii(text) {
    var out = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f;
    return out;
  }

  function concat(parts) {
    var length = parts.reduce(function (n, p) {
      return n + p.length;
    }, 0);
    var out = new Uint8Array(length);
    var at = 0;
    parts.forEach(function (p) {
      out.set(p, at);
      at += p.length;
    });
    return out;
  }

  async function describe(record) {
    var spki = new Uint8Array(await crypto.subtle.exportKey("spki", record.publicKey));
    var digest = new Uint8Array(await crypto.subtle.digest("SHA-256", spki));
    var hex = Array.prototype.map
      .call(digest, function (b) {
        return ("0" + b.toString(16)).slice(-2);
      })
      .join("");
    var lines = bytesToB64(spki).match(/.{1,64}/g) || [];
    return {
      fingerprint: "sha256:" + hex,
      pem: "-----BEGIN PUBLIC KEY-----\n" + lines.join("\n") + "\n-----END PUBLIC KEY-----\n",
    };
  }

  // Fill the form's hidden device_* fields with a proof over a fresh challenge (throws on failure).
  async function prove(form) {
    if (!supported()) throw new Error("this browser cannot hold a device key here (no WebCrypto or IndexedDB)");
    var record = await loadKey();
    if (!record) throw new Error("this browser has no device key: make one on the device key page and have it enrolled");
    var about = await describe(record);
    var response = await fetch("/api/v1/session/device-challenge", {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    if (!response.ok) throw new Error("the server gave no device challenge (" + response.status + ")");
    var challenge = await response.json();
    var message = concat([
      ascii(DOMAIN),
      b64ToBytes(challenge.challenge),
      ascii(about.fingerprint),
      new TextEncoder().encode(form.elements.username.value),
    ]);
    var signature = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, record.privateKey, message)
    );
    form.elements.device_fingerprint.value = about.fingerprint;
    form.elements.device_challenge_id.value = challenge.challenge_id;
    form.elements.device_signature.value = bytesToB64(signature);
  }

  // For webauthn.js, which submits the form itself after the passkey ceremony.
  window.gpaisecDevice = { prove: prove };

  async function showKey(page) {
    show("device-unsupported", !supported());
    if (!supported()) return;
    var record = await loadKey();
    show("device-none", !record);
    show("device-shown", !!record);
    show("device-create", !record);
    show("device-replace", !!record);
    if (!record) return;
    var about = await describe(record);
    document.getElementById("device-fingerprint").textContent = about.fingerprint;
    document.getElementById("device-pem").value = about.pem;
    page.setAttribute("data-ready", "1");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var login = document.querySelector("form[data-device-login]");
    if (login) {
      login.addEventListener("submit", function (event) {
        event.preventDefault();
        say("device-status", "");
        if (!login.reportValidity()) return;
        prove(login).then(
          function () {
            login.submit(); // submit() fires no submit event: no loop
          },
          function (error) {
            say("device-status", "device proof failed: " + (error && error.message ? error.message : error));
          }
        );
      });
    }
    var page = document.querySelector("[data-device-key]");
    if (page) {
      var create = function () {
        say("device-status", "");
        makeKey()
          .then(function () {
            return showKey(page);
          })
          .catch(function (error) {
            say("device-status", "making the key failed: " + (error && error.message ? error.message : error));
          });
      };
      document.getElementById("device-create").addEventListener("click", create);
      document.getElementById("device-replace").addEventListener("click", function () {
        if (window.confirm("Replace this browser's device key? The old one stops working here at once.")) create();
      });
      showKey(page).catch(function (error) {
        say("device-status", "reading the key failed: " + (error && error.message ? error.message : error));
      });
    }
  });
})();
